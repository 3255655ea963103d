// Preloaded by bun test (bunfig.toml): only errors are logged while tests run.
process.env.IAPPS_LOG_LEVEL ??= "error";
