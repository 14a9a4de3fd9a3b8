"""The world every area reads: sites, regions, integrations, stock, their world file and cached state."""
