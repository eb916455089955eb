"""Instruction bytes (ISO/IEC 7816-4 Table 4, ISO 7816-8/9) used by our cards."""

from __future__ import annotations

import enum

__all__ = ["INS"]


class INS(enum.IntEnum):
    """Instruction codes; names follow the standard."""

    MANAGE_SECURITY_ENVIRONMENT = 0x22  # ISO 7816-4 §11.5.11
    CHANGE_REFERENCE_DATA = 0x24  # ISO 7816-4 §11.5.7
    RESET_RETRY_COUNTER = 0x2C  # ISO 7816-4 §11.5.10
    PERFORM_SECURITY_OPERATION = 0x2A  # ISO 7816-8 §5
    VERIFY = 0x20  # ISO 7816-4 §11.5.6
    INTERNAL_AUTHENTICATE = 0x88  # ISO 7816-4 §11.5.2
    GET_CHALLENGE = 0x84
    SELECT = 0xA4  # ISO 7816-4 §11.1.1
    READ_BINARY = 0xB0  # ISO 7816-4 §11.2.3
    READ_RECORD = 0xB2  # ISO 7816-4 §11.3.3
    GET_RESPONSE = 0xC0  # ISO 7816-4 §11.7.1
    GET_DATA = 0xCA  # ISO 7816-4 §11.4.3
    GET_DATA_ODD = 0xCB  # IAS-ECC: GET DATA with BER-TLV data field (PIN counters)
    UPDATE_BINARY = 0xD6
