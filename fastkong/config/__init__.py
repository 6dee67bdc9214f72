"""The config layer: Kong declarative config (``kong.yml``) -> a validated, normalized Config.

``load_config`` accepts what Kong's DB-less mode accepts (``_format_version`` 1.1/2.1/3.0,
nested or top-level entities, references by name or id), reports every error at once with its
path and Kong's message, and returns flat entity lists with Kong's deterministic ids and
defaults. ``dump_state``/``load_state`` carry the result to worker processes.
"""

from fastkong.config.errors import ConfigError, FieldError
from fastkong.config.loader import EMPTY_CONFIG_HASH, dump_state, load_config, load_state
from fastkong.config.schema import (
    Acl,
    BasicauthCredential,
    CACertificate,
    Certificate,
    Config,
    Consumer,
    Healthchecks,
    HmacauthCredential,
    JwtSecret,
    KeyauthCredential,
    LoadedConfig,
    Plugin,
    Route,
    Service,
    Sni,
    Target,
    Upstream,
)

__all__ = [
    "EMPTY_CONFIG_HASH",
    "Acl",
    "BasicauthCredential",
    "CACertificate",
    "Certificate",
    "Config",
    "ConfigError",
    "Consumer",
    "FieldError",
    "Healthchecks",
    "HmacauthCredential",
    "JwtSecret",
    "KeyauthCredential",
    "LoadedConfig",
    "Plugin",
    "Route",
    "Service",
    "Sni",
    "Target",
    "Upstream",
    "dump_state",
    "load_config",
    "load_state",
]
