import pytest

from motcua.runtime.config import ConfigError, load_config, substitute


def test_placeholders_take_the_environment_or_the_default(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("AMQP_URI: ${AMQP_URI:amqp://localhost}\nport: ${PORT:8001}\n"
                    "url: http://${HOST:127.0.0.1}:${PORT:8001}/x\nnothing: ${UNSET_VALUE:null}\n"
                    "nested: {list: ['${HOST:a}', 2]}\n")
    assert load_config(path, {"HOST": "db"}) == {
        "AMQP_URI": "amqp://localhost", "port": 8001, "url": "http://db:8001/x", "nothing": None,
        "nested": {"list": ["db", 2]}}
    assert load_config(path, {"PORT": "9000"})["port"] == 9000


def test_a_missing_variable_without_default_names_it(tmp_path):
    with pytest.raises(ConfigError, match="DATABASE_URL is not set"):
        substitute("${DATABASE_URL}", {}, "catalog/config.yml")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml", {})


@pytest.mark.parametrize("key, value, expected", [
    ("HTTP_MAX_WORKERS", "0", "HTTP_MAX_WORKERS must be a whole number of at least 1, not 0"),
    ("max_workers", "ten", "max_workers must be a whole number of at least 1, not 'ten'"),
    ("NOTIFY_SENDERS", "2.5", "NOTIFY_SENDERS must be a whole number of at least 1, not 2.5"),
    ("CATALOGUE_CACHE_SECONDS", "-1", "CATALOGUE_CACHE_SECONDS must be a number of seconds, 0 or more, not -1"),
    ("CATALOGUE_CACHE_SECONDS", "soon", "CATALOGUE_CACHE_SECONDS must be a number of seconds, 0 or more"),
])
def test_a_pool_size_or_a_time_that_cannot_be_used_is_refused_naming_the_key(tmp_path, key, value, expected):
    """A pool of 0 workers would hang the service; the error comes when the file is read."""
    path = tmp_path / "config.yml"
    path.write_text(f"{key}: ${{SETTING:10}}\n")
    with pytest.raises(ConfigError, match=expected) as refused:
        load_config(path, {"SETTING": value})
    assert str(path) in str(refused.value)
    assert load_config(path, {"SETTING": "3"}) == {key: 3}


def test_every_service_config_passes_the_checks_and_names_the_platform_container():
    from apps.registry import SERVICES
    from motcua.runtime.container import CONTAINER_CLASS_PATH
    for spec in SERVICES.values():
        config = load_config(spec.config_file, {})
        if spec.nameko:
            assert config["SERVICE_CONTAINER_CLS"] == CONTAINER_CLASS_PATH, spec.name
