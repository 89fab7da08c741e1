"""Attribution: the credit of conversions to the touchpoints of their journeys."""
