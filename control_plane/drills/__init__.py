"""Drill runs stored and served (`/v1/drills`), the kill switch that aborts them, and the commerce
calendar that keeps them out of peak sales. The runner itself lives in `chaos/drill`."""
