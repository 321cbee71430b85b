"""The SIP edge (Kamailio): validate every setting (:mod:`~ivr.edge.validate`), render the
configuration (:mod:`~ivr.edge.config`, template ``kamailio.cfg``), run and control it
(:mod:`~ivr.edge.control`)."""

from ivr.edge.config import ANY_NUMBER, KAMAILIO, TEMPLATE, WORKERS_SET, EdgeConfig
from ivr.edge.control import AttachedEdge, Edge, sip_options_ping
from ivr.edge.validate import edge_sources, validate_numbers

__all__ = ["ANY_NUMBER", "KAMAILIO", "TEMPLATE", "WORKERS_SET", "AttachedEdge", "Edge", "EdgeConfig", "edge_sources",
           "sip_options_ping", "validate_numbers"]
