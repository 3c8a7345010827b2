"""``assetctl``: the operators' command line."""
