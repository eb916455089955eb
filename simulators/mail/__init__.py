"""The reference operator trust space for secure health mail (MSSanté-like), for tests and demos.

TEST ONLY: accounts use the test password TEST_PASSWORD and keys from the test PKI.
"""

from bifente.simulators.mail.addresses import TrustSpace, mask_address, parse_address
from bifente.simulators.mail.client_settings import mail_table
from bifente.simulators.mail.directory import DirectoryClient, DirectoryError, UnknownRecipient
from bifente.simulators.mail.info import DomainPorts, OperatorInfo
from bifente.simulators.mail.operator import (
    DEFAULT_DOMAINS,
    DEFAULT_MAX_MESSAGE_BYTES,
    TEST_PASSWORD,
    MailOperator,
    describe,
)
from bifente.simulators.mail.smtp import is_smime

__all__ = [
    "DEFAULT_DOMAINS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "TEST_PASSWORD",
    "DirectoryClient",
    "DirectoryError",
    "DomainPorts",
    "MailOperator",
    "OperatorInfo",
    "TrustSpace",
    "UnknownRecipient",
    "describe",
    "is_smime",
    "mail_table",
    "mask_address",
    "parse_address",
]
