"""Business impact analysis and critical-inventory planning for drctl (DESIGN §1.1, issue 6).

From an order history and the world it computes what an hour of outage of each site and each
integration costs, recommends RTO, RPO and tiers, names the critical SKUs to pre-position at
backup sites and maps which backup serves which region. Pure: it imports only the domain, takes
frames and parameters in and returns plain dataclasses; files and HTML are at the edges
(`bia.export`, `bia.report`).
"""

from bia.engine import run_bia
from bia.frame import HISTORY_COLUMNS, normalize_history, read_history, scan_history
from bia.history import generate_history, write_history
from bia.params import BiaParams
from bia.results import BiaResult, IntegrationImpact, LossPoint, SiteImpact, SiteTarget, site_targets

__all__ = [
    "HISTORY_COLUMNS",
    "BiaParams",
    "BiaResult",
    "IntegrationImpact",
    "LossPoint",
    "SiteImpact",
    "SiteTarget",
    "generate_history",
    "normalize_history",
    "read_history",
    "run_bia",
    "scan_history",
    "site_targets",
    "write_history",
]
