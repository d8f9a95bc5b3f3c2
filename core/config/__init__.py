"""Configuration: one TOML file validated into frozen attrs classes.

The rooms: `types` (what a key accepts), `sections` (the tables, each key documented
where it is declared), `converter` (strict structuring, readable errors), `checks`
(problems across keys), `loader` (file, overrides, relative paths, `ConfigError`).
Secrets are kept out of reprs.
"""

from crucible.config.agent import AgentConfig, ImagesConfig
from crucible.config.checks import (
    standalone_agent_problems,
    worst_case_result_bytes,
)
from crucible.config.loader import (
    ConfigError,
    config_from_dict,
    deep_merge,
    load_config,
    plugin_options,
)
from crucible.config.pool import UP_POOL_SIZES, PoolConfig
from crucible.config.sections import (
    AuthConfig,
    BootstrapConfig,
    ClusterConfig,
    Config,
    DatabaseConfig,
    GraphQLConfig,
    KeypairDefaultsConfig,
    LimitsConfig,
    LoggingConfig,
    ManagerConfig,
    RateLimitConfig,
    ResourcePolicyConfig,
    SchedulerConfig,
    SessionsConfig,
    StorageConfig,
    StorageHostConfig,
    StreamsConfig,
    SupervisionConfig,
)

# The value types most often named outside; the rest are in crucible.config.types.
from crucible.config.types import (
    ACCESS_KEY_RE,
    SECRET_KEY_RE,
    MiB,
    NonNegativeFloat,
    NonNegativeInt,
    PluginOptions,
    PositiveFloat,
    PositiveInt,
)

__all__ = [
    "ACCESS_KEY_RE",
    "SECRET_KEY_RE",
    "UP_POOL_SIZES",
    "AgentConfig",
    "AuthConfig",
    "BootstrapConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "GraphQLConfig",
    "ImagesConfig",
    "KeypairDefaultsConfig",
    "LimitsConfig",
    "LoggingConfig",
    "ManagerConfig",
    "MiB",
    "NonNegativeFloat",
    "NonNegativeInt",
    "PluginOptions",
    "PoolConfig",
    "PositiveFloat",
    "PositiveInt",
    "RateLimitConfig",
    "ResourcePolicyConfig",
    "SchedulerConfig",
    "SessionsConfig",
    "StorageConfig",
    "StorageHostConfig",
    "StreamsConfig",
    "SupervisionConfig",
    "config_from_dict",
    "deep_merge",
    "load_config",
    "plugin_options",
    "standalone_agent_problems",
    "worst_case_result_bytes",
]
