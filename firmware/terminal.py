"""The terminal application: link reader, request dispatcher, card-detect and key event poller."""
# Two lanes (review M2: a prompt must not hold the card link): a prompt lane that owns the
# screen (CONFIRM, SECURE_*, DISPLAY, PAIR_WINDOW) and a card lane (everything else), one
# request at a time in each. A request arriving while its lane is busy gets ERROR BUSY; so does a
# card-lane request for the slot a running PIN prompt is for. ABORT ends the
# prompt in progress. A prompt waiting for keys holds nothing; its card exchange (after the
# PIN is typed) takes the card lock like any card-lane request. Responses echo the request's
# sequence number; events use sequence 0 and are sent only after a successful HELLO. Each
# lane keeps its last response: a repeated request (same sequence number and CRC) gets it
# again without running twice.

import asyncio
import time

from micropython import const

import iso7816
import keypad
import link
import pinentry
from slot import CardSlot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

FW_VERSION = (0, 2, 2)  # 0.2: link protocol 2 (PIN policy, secret screens, IDENTITY, PAIR_WINDOW)
POLL_MS = const(50)  # card-detect and fault polling period
PRESENCE_SCANS = const(2)  # a card-detect change must hold for 2 polls (100 ms)
_READ_CHUNK = const(64)
_MAX_CANCEL_EVENTS = const(4)
_PIN_BUFFERS = const(3)
MAX_PROMPT_S = const(60)  # a prompt never waits longer than this per entry (review M2)
IDENTITY_SCREEN_MS = const(30_000)  # the fingerprint screen (F1) leaves after this, or on OK
NOTICE_MS = const(10_000)  # "Appairage ferme", "demande envoyee": short notices
PAIR_HINT = "F1: appairer"  # under the fingerprint: F1 again asks edged for a pairing window


class PinMismatch(Exception):
    """The new PIN and its confirmation differ (nothing was sent to the card)."""


# --- PIN policy (docs/link-protocol.md, "Secure PIN operations") -------------------------------
# The host names a prompt from this table and says what it wants sent; the terminal sends a
# typed PIN only where the prompt it showed said it would go: its card (by ATR), in its slot,
# under its PIN reference, with CLA 00 and the INS of the request type. A compromised host
# cannot route the PIN to another card or into another command (review finding M4).
CPS_SLOT = const(0)  # the slot labelled "CPS" on the case
# CPS3 contact ATR and OpenSC's mask for CPx cards (bytes 1-3 and 11-13 vary by batch);
# apdu/cps_spec.py holds the same pair for the host.
_CPS_ATR = b"\x3b\xac\x00\x40\x2a\x00\x12\x25\x00\x64\x80\x00\x03\x10\x00\x90\x00"
_CPS_MASK = b"\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\x00\x00\x00\xff\xff\xff"
_PIN_REF_CPS = const(0x01)  # the CPS holder PIN (IAS-ECC PIN reference 01)
_PUK_REF_CPS = const(0x02)  # its unblocking code (IAS-ECC; OpenSC card-iasecc.c, CPx)
_RESET_NEW_PIN = const(0x02)  # RESET RETRY COUNTER P1 02: the data is the new PIN alone
# ISO 7816-4 §11.5.6 VERIFY, §11.5.7 CHANGE REFERENCE DATA, §11.5.10 RESET RETRY COUNTER.
_INS = {link.SECURE_VERIFY: 0x20, link.SECURE_CHANGE: 0x24, link.SECURE_UNBLOCK: 0x2C}
# The prompt lane owns the screen: prompts, and DISPLAY (which must wait for a prompt, not
# cover it).
_PROMPT_TYPES = (link.CONFIRM, link.SECURE_VERIFY, link.SECURE_CHANGE, link.SECURE_UNBLOCK,
                 link.DISPLAY, link.PAIR_WINDOW)
# Firmware-owned prompt text per request type: (title, entry labels).
_PROMPTS = {
    link.SECURE_VERIFY: ("PIN carte CPS", ("Code PIN :",)),
    link.SECURE_CHANGE: ("PIN carte CPS\nChangement", ("Ancien code :", "Nouveau code :",
                                                       "Confirmer :")),
    link.SECURE_UNBLOCK: ("PIN carte CPS\nDeblocage", ("Code PUK :", "Nouveau code :",
                                                       "Confirmer :")),
}


class PinRefused(link.LinkError):
    """A secure PIN request outside the PIN policy (ERROR PIN_POLICY; nothing shown or sent)."""

    def __init__(self, detail: str) -> None:
        super().__init__(link.E_PIN_POLICY, detail)


def is_cps_atr(atr: "Any", n: int) -> bool:
    """True when atr[:n] is a CPS3 contact ATR under OpenSC's CPx mask."""
    if n != len(_CPS_ATR):
        return False
    for i in range(n):
        if (atr[i] ^ _CPS_ATR[i]) & _CPS_MASK[i]:
            return False
    return True


def check_pin_policy(msg: "Any", slots: list) -> None:
    """Raise PinRefused unless msg may send a typed PIN (checked before any prompt is shown)."""
    if msg.prompt != link.PROMPT_PIN_CPS:
        raise PinRefused("prompt %d unknown" % msg.prompt)
    if msg.slot != CPS_SLOT:
        raise PinRefused("slot %d is not the CPS slot" % msg.slot)
    if msg.cla != 0x00:  # ISO 7816-4 §5.4.1: interindustry, no SM, no chaining
        raise PinRefused("CLA %02X not allowed" % msg.cla)
    if msg.ins != _INS[msg.TYPE]:
        raise PinRefused("INS %02X not allowed for %s" % (msg.ins, link.TYPE_NAMES[msg.TYPE]))
    # P1 00: old+new (24), plain VERIFY (20). Unblocking (2C) is IAS-ECC's: P1 02, the
    # terminal verifying the PUK itself first (ISO 7816-4 §11.5.10; OpenSC card-iasecc.c).
    wanted_p1 = _RESET_NEW_PIN if msg.TYPE == link.SECURE_UNBLOCK else 0x00
    if msg.p1 != wanted_p1:
        raise PinRefused("P1 %02X not allowed" % msg.p1)
    if msg.p2 != _PIN_REF_CPS:
        raise PinRefused("P2 %02X is not PIN reference %02X" % (msg.p2, _PIN_REF_CPS))
    if CPS_SLOT >= len(slots):
        raise PinRefused("no CPS slot")
    slot = slots[CPS_SLOT]
    if slot.state != iso7816.POWERED:  # refuse before asking anyone for a PIN
        raise iso7816.NotPowered() if slot.state != iso7816.EMPTY else iso7816.NoCard()
    if not is_cps_atr(slot.atr, slot.atr_len):
        raise PinRefused("the card in slot %d is not a CPS" % CPS_SLOT)


# Errors raised low, translated once here (STYLE habit 4).
_ERRORS = (
    (iso7816.NoCard, link.E_NO_CARD),
    (iso7816.NotPowered, link.E_NOT_POWERED),
    (iso7816.CardMute, link.E_CARD_MUTE),
    (iso7816.CardRemoved, link.E_CARD_REMOVED),
    (iso7816.CardProtocolError, link.E_CARD_PROTOCOL),
    (iso7816.BadAtr, link.E_BAD_ATR),
    (iso7816.UnsupportedCard, link.E_UNSUPPORTED_CARD),
    (iso7816.BadApdu, link.E_BAD_APDU),
    (iso7816.HardwareFault, link.E_HW_FAULT),
    (pinentry.PromptCancelled, link.E_USER_CANCELLED),
    (pinentry.PromptTimeout, link.E_PROMPT_TIMEOUT),
    (pinentry.PromptAborted, link.E_ABORTED),
    (PinMismatch, link.E_PIN_MISMATCH),
)

_SCREEN = {
    link.E_USER_CANCELLED: "Annule",
    link.E_PROMPT_TIMEOUT: "Delai depasse",
    link.E_ABORTED: "Annule par l'hote",
    link.E_PIN_MISMATCH: "Codes differents",
    link.E_CARD_REMOVED: "Carte retiree",
    link.E_CARD_MUTE: "Carte muette",
    link.E_PIN_POLICY: "Demande refusee",
}


def _detail(exc: BaseException) -> str:
    # Printable ASCII only, capped: our messages carry lengths and bytes, never PIN digits.
    if not exc.args or not isinstance(exc.args[0], str):
        return ""
    out = ""
    for ch in exc.args[0][:link.MAX_DETAIL]:
        out += ch if " " <= ch <= "~" else "?"
    return out


class Terminal:
    """Runs the link protocol over a port, for card slots, a key queue and a text display."""

    def __init__(self, port: "Any", slot_hw: list, keys: keypad.KeyQueue, display: "Any",
                 fw_version: tuple = FW_VERSION) -> None:
        self.port = port
        self.slots = [CardSlot(hw, i) for i, hw in enumerate(slot_hw)]
        self.keys = keys
        self.display = display
        self.fw_version = fw_version
        self.pinpad = pinentry.PinPad(keys, display)
        self.parser = link.FrameParser()
        self.handshaken = False
        self.peer_max_payload = link.MIN_PEER_PAYLOAD
        self.link_errors = 0  # frames rejected by the parser (not garbage)
        self.garbage_runs = 0
        self._rx = bytearray(_READ_CHUNK)
        self._items = []  # type: list
        self._tx = bytearray(link.MAX_FRAME)  # response being built
        self._cache = bytearray(link.MAX_FRAME)  # last response sent (swapped with _tx)
        self._cache_len = 0
        self._last_seq = -1
        self._last_crc = -1
        self._aux = bytearray(link.OVERHEAD + 1 + link.MAX_DETAIL)  # reader-side answers
        self._evt = bytearray(link.OVERHEAD + 2)
        self._lock = asyncio.Lock()  # the port: one frame written at a time
        self._card_lock = asyncio.Lock()  # the slots and _tx: card lane, or a prompt's APDU
        self._busy = False  # card lane
        self._prompting = False  # prompt lane
        self._prompt_slot = -1  # the slot a running SECURE_* prompt is for
        self._pcache = bytearray(link.OVERHEAD + 1 + link.MAX_DETAIL)  # prompt lane answer
        self._p_len = 0
        self._p_seq = -1
        self._p_crc = -1
        self._cancel_events = 0
        self._pins = [bytearray(pinentry.MAX_DIGITS) for _ in range(_PIN_BUFFERS)]
        self._apdu = bytearray(5 + 2 * link.MAX_PIN_BLOCK)
        self._seen = [False] * len(self.slots)
        self._changes = [0] * len(self.slots)
        self.identity = ""  # the daemon's fingerprint text (IDENTITY), shown on F1
        # Pairing window (review L1): F1 on the fingerprint screen asks edged to open one
        # (EV_PAIR_REQUESTED); edged answers PAIR_WINDOW, and we count it down on the screen.
        self._identity_gen = -1  # display generation of the fingerprint screen we showed
        self._pair_request = False
        self._window_until = time.ticks_ms()  # deadline of the open window (ticks)
        self._window_gen = -1  # display generation of our window screen (-1: none up)
        self._window_left = -1  # seconds shown on it
        keys.on_idle_key = self._idle_key

    # -- tasks --
    async def run(self) -> None:
        """Serve the link until the port closes (never, on the Pico)."""
        poller = asyncio.create_task(self.poll_forever())
        try:
            await self.read_forever()
        finally:
            poller.cancel()

    async def read_forever(self) -> None:
        """Read the port, feed the parser, dispatch frames; expire stalled frames."""
        items = self._items
        while True:
            n = -1
            if self.parser.pending():
                try:
                    n = await asyncio.wait_for_ms(self.port.read_into(self._rx),
                                                  link.INTERBYTE_TIMEOUT_MS)
                except asyncio.TimeoutError:
                    n = -1
            else:
                n = await self.port.read_into(self._rx)
            if n == 0:
                return
            del items[:]
            if n < 0:
                self.parser.expire(items)
            else:
                self.parser.feed(memoryview(self._rx)[:n], items)
            for item in items:
                await self._on_item(item)
            del items[:]

    async def poll_forever(self) -> None:
        """Card-detect debounce, fault watch and idle-key events, every POLL_MS."""
        while True:
            await self.poll_once()
            await asyncio.sleep_ms(POLL_MS)

    async def poll_once(self) -> None:
        """One polling round (tests call it directly)."""
        for i in range(len(self.slots)):
            slot = self.slots[i]
            raw = bool(slot.hw.present())
            if raw != self._seen[i]:
                self._changes[i] += 1
                if self._changes[i] >= PRESENCE_SCANS:
                    self._seen[i] = raw
                    self._changes[i] = 0
                    slot.set_present(raw)
                    if not raw and self.display.secret and not self.keys.claimed:
                        self.display.clear()  # the patient leaves: their code goes too
                    if not raw and i == self._prompt_slot and self.keys.claimed:
                        self.keys.abort()  # the card a PIN was asked for is gone
                    await self._emit(link.EV_CARD_INSERTED if raw else link.EV_CARD_REMOVED, i)
            else:
                self._changes[i] = 0
                if raw and slot.state == iso7816.EMPTY:
                    slot.set_present(True)
            if slot.state == iso7816.POWERED and raw and slot.hw.fault():
                slot.fault()
                await self._emit(link.EV_SLOT_FAULT, i)
        self._count_down()
        if not self.keys.claimed:
            self.display.expire()
        while self._cancel_events:
            self._cancel_events -= 1
            await self._emit(link.EV_CANCEL_PRESSED, link.NO_SLOT)
        if self._pair_request:
            self._pair_request = False
            await self._emit(link.EV_PAIR_REQUESTED, link.NO_SLOT)

    def _idle_key(self, key: str) -> None:
        # Keys while no prompt holds the keypad: CANCEL is reported, OK dismisses a code or
        # the fingerprint, F1 shows the daemon's fingerprint (docs/terminal.md, "Keys").
        if key == "CANCEL":
            if self._cancel_events < _MAX_CANCEL_EVENTS:
                self._cancel_events += 1
        elif key == "OK":
            if self.display.timed or self.display.secret:
                self.display.clear()
        elif key == "F1":
            if self.display.generation == self._identity_gen and self.display.timed:
                self._ask_pairing_window()  # F1 again, on the fingerprint screen
                return
            self.display.show(self._identity_screen(), False, IDENTITY_SCREEN_MS)
            # Only a known fingerprint offers pairing: the desk compares it when it pairs.
            self._identity_gen = self.display.generation if self.identity else -1

    def _identity_screen(self) -> list:
        if not self.identity:
            return ["Empreinte", "inconnue", "(edged absent)"]
        return ["Empreinte edged"] + self.identity.split("\n") + [PAIR_HINT]

    def _ask_pairing_window(self) -> None:
        # A physical key press is what lets a pairing through the network-wide lockout
        # (docs/pairing.md, "The pairing window"): the host cannot fake it, only ask for it.
        self._identity_gen = -1
        if not self.handshaken or not self.identity:
            self.display.show(["Appairage", "impossible :", "edged absent"], False, NOTICE_MS)
            return
        self._pair_request = True
        self.display.show(["Appairage", "demande envoyee"], False, NOTICE_MS)

    def _show_window(self, left: int) -> None:
        # Timed a second past the deadline, so _count_down (not expire) ends it; timed screens
        # are not brought back after a prompt, where the count would be stale.
        self.display.show(["Appairage ouvert", "Reste %d s" % left, "Appairez le",
                           "poste maintenant", "Annuler: fermer"], False, left * 1000 + 1000)
        self._window_gen = self.display.generation
        self._window_left = left

    def _count_down(self) -> None:
        """Refresh the window screen each second while it is up; "Appairage ferme" at 0."""
        if self._window_gen < 0:
            return
        if self.display.generation != self._window_gen:  # another screen took over
            self._window_gen = -1
            return
        left = (time.ticks_diff(self._window_until, time.ticks_ms()) + 999) // 1000
        if left <= 0:
            self._window_gen = -1
            self.display.show(["Appairage ferme"], False, NOTICE_MS)
        elif left != self._window_left:
            self._show_window(left)

    def _pair_window(self, seconds: int) -> None:
        if seconds:
            self._window_until = time.ticks_add(time.ticks_ms(), seconds * 1000)
            if self.display.secret:  # a code stays up (review M3); the window opens unseen
                self._window_gen = -1
                return
            self._show_window(seconds)
        elif self._window_gen >= 0 and self.display.generation == self._window_gen:
            self._window_gen = -1
            self.display.show(["Appairage ferme"], False, NOTICE_MS)
        else:
            self._window_gen = -1

    # -- frames in --
    async def _on_item(self, item: "Any") -> None:
        if isinstance(item, link.FrameError):
            if item.code == link.E_GARBAGE:
                self.garbage_runs += 1
                return
            self.link_errors += 1
            await self._send_aux(item.seq, link.ERROR, link.Error(item.code, item.detail))
            return
        frame = item
        self._expire_caches(frame)
        if frame.mtype == link.ABORT:
            if self.keys.claimed:
                self.keys.abort()
            await self._send_aux(frame.seq, link.ACK, None)
            return
        if frame.mtype in _PROMPT_TYPES:
            await self._on_prompt(frame)
            return
        if self._busy:
            await self._send_aux(frame.seq, link.ERROR, link.Error(link.E_BUSY, "request running"))
            return
        why = self._disturbs_prompt(frame)
        if why:
            await self._send_aux(frame.seq, link.ERROR, link.Error(link.E_BUSY, why))
            return
        if (frame.seq == self._last_seq and frame.crc == self._last_crc and self._cache_len
                and frame.mtype != link.HELLO):
            async with self._lock:
                await self.port.write(self._cache, self._cache_len)
            return
        self._busy = True
        asyncio.create_task(self._execute(frame))

    def _expire_caches(self, frame: "Any") -> None:
        # A kept answer serves only a resend of its own request. The host numbers requests
        # 1..255 in turn across both lanes: the sequence number just before a kept one means
        # the host went all the way round, and a new HELLO means a new host session.
        nxt = frame.seq % 255 + 1 if frame.seq else -2  # the number after this one
        if frame.mtype == link.HELLO:
            self._p_len = 0
            self._cache_len = 0
            return
        if frame.mtype in _PROMPT_TYPES:
            if nxt == self._last_seq:
                self._cache_len = 0
        elif nxt == self._p_seq:
            self._p_len = 0

    async def _on_prompt(self, frame: "Any") -> None:
        if self._prompting:  # one prompt on the screen at a time (and our own resends)
            await self._send_aux(frame.seq, link.ERROR, link.Error(link.E_BUSY, "prompt running"))
            return
        if frame.seq == self._p_seq and frame.crc == self._p_crc and self._p_len:
            async with self._lock:
                await self.port.write(self._pcache, self._p_len)
            return
        self._prompting = True
        p = frame.payload
        secure = frame.mtype in _INS
        self._prompt_slot = p[0] if secure and len(p) else -1
        asyncio.create_task(self._execute_prompt(frame))

    def _disturbs_prompt(self, frame: "Any") -> str:
        # While a PIN prompt is up, the card lane may not touch its slot (a reset or power
        # off there would void the check made before the prompt).
        if not self._prompting:
            return ""
        t = frame.mtype
        if t in (link.TRANSMIT, link.POWER_ON, link.POWER_OFF) and len(frame.payload) and \
                frame.payload[0] == self._prompt_slot:
            return "PIN prompt on this slot"
        return ""

    def _check_request(self, frame: "Any") -> "Any":
        msg = link.decode(frame.mtype, frame.payload)
        if frame.mtype & 0x80:
            raise link.DecodeError(link.E_UNKNOWN_TYPE, "not a request")
        if not self.handshaken and frame.mtype != link.HELLO:
            raise link.DecodeError(link.E_HANDSHAKE, "send HELLO first")
        return msg

    async def _execute(self, frame: "Any") -> None:
        seq = frame.seq
        self._cache_len = 0  # the cached answer belongs to the previous request only
        try:
            async with self._card_lock:  # _tx is ours until the answer is sent
                try:
                    await self._dispatch(seq, self._check_request(frame))
                except Exception as exc:  # translated once, here
                    await self._respond_error(seq, exc)
        finally:
            self._last_seq = seq
            self._last_crc = frame.crc
            self._busy = False

    async def _execute_prompt(self, frame: "Any") -> None:
        seq = frame.seq
        self._p_len = 0
        try:
            try:
                msg = self._check_request(frame)
                if msg.TYPE == link.DISPLAY:
                    secret_s = min(msg.secret_s, link.MAX_SECRET_S)
                    self.display.show(msg.lines, secret_s > 0, secret_s * 1000)
                    await self._respond(seq, link.Empty(link.ACK), True)
                elif msg.TYPE == link.PAIR_WINDOW:
                    self._pair_window(msg.seconds)
                    await self._respond(seq, link.Empty(link.ACK), True)
                elif msg.TYPE == link.CONFIRM:
                    before = self.display.saved()  # a code is never brought back (review M3)
                    result = await self.pinpad.confirm(msg.text, self._timeout_ms(msg.timeout_s))
                    self.display.show(before)
                    await self._respond(seq, link.ConfirmResult(result), True)
                else:
                    await self._secure(seq, msg)
            except Exception as exc:
                await self._respond_error(seq, exc, True)
        finally:
            self._p_seq = seq
            self._p_crc = frame.crc
            self._prompt_slot = -1
            self._prompting = False

    async def _dispatch(self, seq: int, msg: "Any") -> None:
        t = msg.TYPE
        if t == link.HELLO:
            await self._hello(seq, msg)
        elif t == link.SLOT_STATUS:
            await self._respond(seq, link.SlotStatusRsp([s.state for s in self.slots]))
        elif t == link.POWER_ON:
            slot = self._slot(msg.slot)
            atr = await slot.power_on()
            await self._respond(seq, link.Atr(msg.slot, slot.protocol, slot.fidi, atr))
        elif t == link.POWER_OFF:
            self._slot(msg.slot).power_off()
            await self._respond(seq, link.Empty(link.ACK))
        elif t == link.TRANSMIT:
            slot = self._slot(msg.slot)
            n = await slot.transmit(msg.apdu, self._tx, link.HEADER_LEN)
            await self._send_tx(link.seal_frame(self._tx, seq, link.RESPONSE, n))
        elif t == link.IDENTITY:
            self.identity = msg.text
            await self._respond(seq, link.Empty(link.ACK))
        else:
            raise link.DecodeError(link.E_UNKNOWN_TYPE, "not a request")

    async def _hello(self, seq: int, msg: "Any") -> None:
        if msg.version != link.PROTOCOL_VERSION:
            self.handshaken = False
            raise link.DecodeError(link.E_BAD_VERSION, "protocol %d" % link.PROTOCOL_VERSION)
        self.handshaken = True
        self.peer_max_payload = msg.max_payload
        major, minor, patch = self.fw_version
        await self._respond(seq, link.HelloAck(link.PROTOCOL_VERSION, major, minor, patch,
                                               link.MAX_PAYLOAD, len(self.slots)))

    def _slot(self, index: int) -> CardSlot:
        if index >= len(self.slots):
            raise link.DecodeError(link.E_BAD_SLOT, "slot %d" % index)
        return self.slots[index]

    @staticmethod
    def _timeout_ms(timeout_s: int) -> int:
        return min(timeout_s or link.DEFAULT_TIMEOUT_S, MAX_PROMPT_S) * 1000

    # -- secure PIN operations --
    async def _secure(self, seq: int, msg: "Any") -> None:
        self._slot(msg.slot)  # BAD_SLOT first, as for every request
        check_pin_policy(msg, self.slots)
        slot = self.slots[CPS_SLOT]
        title, labels = _PROMPTS[msg.TYPE]
        if 1 <= msg.tries <= 15 and msg.TYPE != link.SECURE_UNBLOCK:
            title += "\nReste %d essai%s" % (msg.tries, "s" if msg.tries > 1 else "")
        fields = msg.fields()
        timeout = self._timeout_ms(msg.timeout_s)
        pins = self._pins
        apdu = self._apdu
        counts = [0, 0, 0]
        try:
            for b in pins:
                pinentry.wipe(b)
            try:
                for i in range(len(labels)):
                    field = fields[min(i, len(fields) - 1)]
                    counts[i] = await self.pinpad.enter(pins[i], title, labels[i],
                                                        field.min_len, field.max_len, timeout)
            except pinentry.PromptAborted:
                if slot.state != iso7816.POWERED:  # aborted by the poller: the card left
                    raise iso7816.CardRemoved("card removed during PIN entry")
                raise
            if len(labels) == 3 and not pinentry.same(pins[1], counts[1], pins[2], counts[2]):
                raise PinMismatch("confirmation differs")
            # Built from the policy's values, not the host's bytes (equal once checked).
            unblock = msg.TYPE == link.SECURE_UNBLOCK
            self.display.show(["Verification..."])
            async with self._card_lock:  # _tx is scratch while we hold the lock
                check_pin_policy(msg, self.slots)  # the same card, still powered
                if unblock:  # VERIFY the PUK (P2 02), then RESET RETRY COUNTER P1 02
                    sw = await self._pin_apdu(slot, apdu, 0x20, 0x00, _PUK_REF_CPS,
                                              pins[0], counts[0], fields[0])
                    if sw == 0x9000:
                        sw = await self._pin_apdu(slot, apdu, 0x2C, _RESET_NEW_PIN,
                                                  _PIN_REF_CPS, pins[1], counts[1],
                                                  fields[min(1, len(fields) - 1)])
                else:
                    apdu[0] = 0x00
                    apdu[1] = _INS[msg.TYPE]
                    apdu[2] = 0x00
                    apdu[3] = _PIN_REF_CPS
                    off = 5
                    for i in range(len(fields)):
                        off = pinentry.put_block(apdu, off, pins[i], counts[i], fields[i])
                    apdu[4] = off - 5
                    n = await slot.transmit(memoryview(apdu)[:off], self._tx, link.HEADER_LEN)
                    base = link.HEADER_LEN + n - 2
                    sw = (self._tx[base] << 8) | self._tx[base + 1]
        finally:
            for b in pins:
                pinentry.wipe(b)
            pinentry.wipe(apdu)
        self.display.show(self._pin_screen(sw))
        await self._respond(seq, link.PinResult(sw), True)

    async def _pin_apdu(self, slot: "Any", apdu: bytearray, ins: int, p1: int, p2: int,
                        pin: bytearray, count: int, field: "Any") -> int:
        """Send CLA 00 INS P1 P2 with one PIN block; the card's SW (caller holds _card_lock)."""
        apdu[0] = 0x00
        apdu[1] = ins
        apdu[2] = p1
        apdu[3] = p2
        off = pinentry.put_block(apdu, 5, pin, count, field)
        apdu[4] = off - 5
        try:
            n = await slot.transmit(memoryview(apdu)[:off], self._tx, link.HEADER_LEN)
        finally:
            pinentry.wipe(apdu)
        base = link.HEADER_LEN + n - 2
        return (self._tx[base] << 8) | self._tx[base + 1]

    @staticmethod
    def _pin_screen(sw: int) -> list:
        if sw == 0x9000:
            return ["Code correct"]
        if (sw & 0xFFF0) == 0x63C0:  # ISO 7816-4 §10.1.3: x = tries left
            left = sw & 0x0F
            if left == 0:
                return ["Code incorrect", "Carte bloquee"]
            return ["Code incorrect", "Reste %d essai%s" % (left, "s" if left > 1 else "")]
        if sw == 0x6983:  # authentication method blocked
            return ["Code bloque"]
        return ["Erreur carte", "%04X" % sw]

    # -- frames out --
    async def _respond(self, seq: int, msg: "Any", prompt: bool = False) -> None:
        if prompt:  # the prompt lane's answers are short; kept for a repeat
            async with self._lock:
                n = link.build_frame(self._pcache, seq, msg.TYPE, msg.payload())
                await self.port.write(self._pcache, n)
            self._p_len = n
            return
        n = link.build_frame(self._tx, seq, msg.TYPE, msg.payload())
        await self._send_tx(n)

    async def _send_tx(self, n: int) -> None:
        async with self._lock:
            await self.port.write(self._tx, n)
        self._tx, self._cache = self._cache, self._tx
        self._cache_len = n

    async def _respond_error(self, seq: int, exc: BaseException, prompt: bool = False) -> None:
        code = link.E_INTERNAL
        detail = type(exc).__name__
        if isinstance(exc, link.LinkError):
            code = exc.code
            detail = exc.detail
        else:
            for cls, c in _ERRORS:
                if isinstance(exc, cls):
                    code = c
                    detail = _detail(exc)
                    break
        screen = _SCREEN.get(code)
        if screen is not None and (prompt or not self._prompting):  # never over a prompt
            self.display.show([screen])
        await self._respond(seq, link.Error(code, detail[:link.MAX_DETAIL]), prompt)

    async def _send_aux(self, seq: int, mtype: int, msg: "Optional[Any]") -> None:
        payload = msg.payload() if msg is not None else b""
        async with self._lock:
            n = link.build_frame(self._aux, seq, mtype, payload)
            await self.port.write(self._aux, n)

    async def _emit(self, kind: int, slot: int) -> None:
        if not self.handshaken:
            return
        async with self._lock:
            buf = self._evt
            buf[link.HEADER_LEN] = kind
            buf[link.HEADER_LEN + 1] = slot
            n = link.seal_frame(buf, 0, link.EVENT, 2)
            await self.port.write(buf, n)
