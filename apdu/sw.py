"""ISO/IEC 7816-4 status words (§5.6) as an enum with their meanings."""

from __future__ import annotations

import enum

__all__ = ["SW", "describe"]


class SW(enum.IntEnum):
    """Status words named after ISO/IEC 7816-4 Table 5/6 and the IAS-ECC quirks we meet."""

    OK = 0x9000
    # 61xx and 6Cxx carry a length in SW2; these are the SW1-only families (§5.6).
    MORE_DATA = 0x6100
    WRONG_LE = 0x6C00
    WARNING_NO_INFO = 0x6200
    END_OF_FILE = 0x6282
    FILE_DEACTIVATED = 0x6283
    VERIFY_FAILED = 0x63C0  # 63Cx: x tries left (§5.6, counter in SW2 low nibble)
    EXEC_ERROR = 0x6400
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_NOT_ALLOWED = 0x6900
    INCOMPATIBLE_FILE_STRUCTURE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_EF = 0x6986
    SM_DATA_MISSING = 0x6987
    SM_DATA_INCORRECT = 0x6988
    WRONG_PARAMETERS = 0x6A00
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    LC_INCONSISTENT_WITH_TLV = 0x6A85
    INCORRECT_P1_P2 = 0x6A86
    LC_INCONSISTENT_WITH_P1_P2 = 0x6A87
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    FILE_ALREADY_EXISTS = 0x6A89
    WRONG_P1_P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00

    @property
    def meaning(self) -> str:
        """A human sentence for this status word."""
        return _MEANINGS.get(self, self.name.replace("_", " ").lower())


_MEANINGS: dict[SW, str] = {
    SW.OK: "success",
    SW.MORE_DATA: "more response bytes available (GET RESPONSE)",
    SW.WRONG_LE: "wrong Le; SW2 gives the exact length",
    SW.END_OF_FILE: "end of file reached before Le bytes",
    SW.VERIFY_FAILED: "verification failed",
    SW.WRONG_LENGTH: "wrong length (Lc or Le)",
    SW.SECURITY_STATUS_NOT_SATISFIED: "security status not satisfied (PIN required)",
    SW.AUTH_METHOD_BLOCKED: "authentication method blocked",
    SW.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW.FILE_NOT_FOUND: "file or application not found",
    SW.RECORD_NOT_FOUND: "record not found",
    SW.INCORRECT_P1_P2: "incorrect parameters P1-P2",
    SW.REFERENCED_DATA_NOT_FOUND: "referenced data not found",
    SW.INS_NOT_SUPPORTED: "instruction not supported",
    SW.CLA_NOT_SUPPORTED: "class not supported",
}


def describe(sw: int) -> str:
    """Return 'XXXX (meaning)' for any 16-bit status word, including the 61xx/63Cx/6Cxx forms."""
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        text = f"{sw2 or 256} more bytes available"
    elif sw1 == 0x6C:
        text = f"wrong Le, exact length is {sw2 or 256}"
    elif sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        text = f"verification failed, {sw2 & 0x0F} tries left"
    else:
        try:
            text = SW(sw).meaning
        except ValueError:
            text = "unknown status"
    return f"{sw:04X} ({text})"
