pytest_plugins = ["hs_common.testing"]
