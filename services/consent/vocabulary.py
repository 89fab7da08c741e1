"""The names a consent change is recorded with: purposes, channels, sources, methods.

The values are stored in events or mapped by name to the enums of
closedloop.consent.v1, so none is ever renamed.
"""

from enum import StrEnum


class Purpose(StrEnum):
    MARKETING_EMAIL = "marketing_email"
    NEWSLETTER = "newsletter"
    SALES_CONTACT = "sales_contact"
    PRODUCT_UPDATES = "product_updates"
    EVENT_INVITATIONS = "event_invitations"
    PROFILING = "profiling"
    THIRD_PARTY_SHARING = "third_party_sharing"
    RESEARCH = "research"
    #: Withdrawals only: every purpose on the withdrawal's channel (global opt-out).
    ALL = "all"
    #: Withdrawals only: GDPR art. 21, every marketing purpose on every channel.
    DIRECT_MARKETING_OBJECTION = "direct_marketing_objection"


#: The purposes an objection to direct marketing covers: all but research.
MARKETING_PURPOSES = frozenset(
    {
        Purpose.MARKETING_EMAIL,
        Purpose.NEWSLETTER,
        Purpose.SALES_CONTACT,
        Purpose.PRODUCT_UPDATES,
        Purpose.EVENT_INVITATIONS,
        Purpose.PROFILING,
        Purpose.THIRD_PARTY_SHARING,
    }
)
#: What a withdrawal may name instead of one purpose.
SCOPES = frozenset({Purpose.ALL, Purpose.DIRECT_MARKETING_OBJECTION})
#: A Global Privacy Control signal opts out of sale and sharing, nothing else.
GPC_PURPOSES = (Purpose.THIRD_PARTY_SHARING, Purpose.PROFILING)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"
    WEB = "web"
    IN_APP = "in_app"


#: The channel of a change that covers every channel.
EVERY_CHANNEL = ""


class SourceSystem(StrEnum):
    WEB_FORM = "web_form"
    CRM = "crm"
    EMAIL_TOOL = "email_tool"
    CALL_CENTRE = "call_centre"
    PREFERENCE_CENTRE = "preference_centre"
    GPC = "gpc"
    IMPORT = "import"
    API = "api"
    SALES_REP = "sales_rep"


class LegalBasis(StrEnum):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"


class Method(StrEnum):
    FORM = "form"
    DOUBLE_OPT_IN_CONFIRMED = "double_opt_in_confirmed"
    DOUBLE_OPT_IN_REQUESTED = "double_opt_in_requested"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    PREFERENCE_CENTRE = "preference_centre"
    GPC = "gpc"
    API = "api"
    IMPORT = "import"
    SALES_REP = "sales_rep"


GRANT_METHODS = frozenset(
    {
        Method.FORM,
        Method.DOUBLE_OPT_IN_CONFIRMED,
        Method.DOUBLE_OPT_IN_REQUESTED,
        Method.PREFERENCE_CENTRE,
        Method.API,
        Method.IMPORT,
        Method.SALES_REP,
    }
)
WITHDRAWAL_METHODS = frozenset(
    {
        Method.FORM,
        Method.UNSUBSCRIBE_LINK,
        Method.PREFERENCE_CENTRE,
        Method.GPC,
        Method.API,
        Method.IMPORT,
        Method.SALES_REP,
    }
)


class State(StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    NOT_OPTED = "not_opted"
    PENDING_CONFIRMATION = "pending_confirmation"


class Frequency(StrEnum):
    IMMEDIATE = "immediate"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    NEVER = "never"


class ChangeKind(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    ERASED = "erased"
