"""The read models as both sides know them: the projector writes them, insights reads.

One module per read model holds its name, its version, the SQLAlchemy Core tables of
that version and the values its rows take; `common` holds what every read model
shares. The projections (services/projector/projections) import their tables from
here and keep only how events become rows; the insights service imports them from
here too, so neither reaches into the other.
"""

from closedloop.readmodels.common import ReadModel, store_url

__all__ = ["ReadModel", "store_url"]
