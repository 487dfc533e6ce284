"""Imports every model module, so ``Base.metadata`` knows all tables (Alembic, tests)."""

from app.addon import models as addon_models
from app.agents import models as agents_models
from app.customers import models as customers_models
from app.db.base import Base
from app.mailboxes import models as mailboxes_models
from app.messages import models as messages_models
from app.outbox import models as outbox_models
from app.ratings import models as ratings_models
from app.rules import models as rules_models
from app.sla import models as sla_models
from app.tickets import models as tickets_models
from templates_replies import models as templates_models

metadata = Base.metadata

__all__ = [
    "addon_models",
    "agents_models",
    "customers_models",
    "mailboxes_models",
    "messages_models",
    "metadata",
    "outbox_models",
    "ratings_models",
    "rules_models",
    "sla_models",
    "templates_models",
    "tickets_models",
]
