"""Business impact analysis over the stored order history: runs recorded, served and fed to routing."""
