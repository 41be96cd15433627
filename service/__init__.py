"""Lead Intake: website forms and partner webhooks into Close leads, reliably."""

__version__ = "0.1.0"
