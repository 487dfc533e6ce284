"""Gmail labels: the taxonomy under one root, and the two-way mapping with ticket state."""

from labels.taxonomy import LabelChange, LabelSpec, Taxonomy, TicketLabelState

__all__ = ["LabelChange", "LabelSpec", "Taxonomy", "TicketLabelState"]
