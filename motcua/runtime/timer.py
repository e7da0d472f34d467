"""nameko's timer with its interval read from the service's config (tests run it faster)."""
from nameko.timer import Timer


class ConfiguredTimer(Timer):
    def __init__(self, config_key: str, interval: float, **kwargs):
        self.config_key = config_key
        super().__init__(interval, **kwargs)

    def setup(self):
        self.interval = float(self.container.config.get(self.config_key, self.interval))


configured_timer = ConfiguredTimer.decorator
