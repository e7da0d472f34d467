import pytest

from motcua.config import ConfigError, load_config, substitute


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
