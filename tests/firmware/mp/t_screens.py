"""The shared screen (review M3): codes leave the display and never come back; F1 fingerprint."""

import asyncio
import time

import link
from rig import Rig

CODE = ["Mot de passe DMP", "a9ym-3ptt-kfbg"]


def shows_code(rig):
    """True if any line of the current screen holds the code."""
    return any("a9ym" in line for line in rig.display.lines())


async def show_secret(rig, secret_s=30):
    """DISPLAY the code as a secret screen."""
    ack = await rig.host.request(link.Display(CODE, secret_s))
    assert ack.TYPE == link.ACK and shows_code(rig)


async def settle(rig, ms=150):
    """Let the terminal's 50 ms poller run a few rounds."""
    await asyncio.sleep_ms(ms)


async def test_secret_screen_expires():
    async with Rig(power=False) as rig:
        await show_secret(rig, 1)
        await settle(rig, 500)
        assert shows_code(rig)  # still there before its second is up
        await settle(rig, 800)
        assert rig.display.lines() == [] and not rig.display.secret


async def test_secret_lifetime_is_capped_by_the_firmware():
    async with Rig(power=False) as rig:
        await show_secret(rig, 255)
        left = time.ticks_diff(rig.display._until, time.ticks_ms())
        assert 59_000 < left <= link.MAX_SECRET_S * 1000, left


async def test_ok_dismisses_a_code_but_not_an_ordinary_screen():
    async with Rig(power=False) as rig:
        await rig.host.request(link.Display(["Bonjour"]))
        rig.keys.push("OK")
        await settle(rig)
        assert rig.display.lines() == ["Bonjour"]
        await show_secret(rig)
        rig.keys.push("OK")
        await settle(rig)
        assert rig.display.lines() == []


async def test_vitale_removal_clears_the_code():
    async with Rig(power=False) as rig:
        await show_secret(rig)
        rig.hw1.card_present = False  # the patient takes the card and leaves
        await settle(rig, 250)
        assert rig.display.lines() == []
        kinds = [(e.kind, e.slot) for e in rig.host.events()]
        assert (link.EV_CARD_REMOVED, 1) in kinds


async def test_code_never_comes_back_after_a_prompt():
    # The review's reproduction: the password reappeared when a later consent prompt ended.
    async with Rig(power=False) as rig:
        await show_secret(rig)
        rig.typing(["OK"])
        result = await rig.host.request(link.Confirm(10, "Consentement DMP ?"))
        assert result.result == link.CONFIRM_OK
        assert not shows_code(rig) and rig.display.lines() == []
        rig.typing(["CANCEL"])
        await rig.host.request(link.Confirm(10, "Autre question ?"))
        assert not shows_code(rig)
        first = [i for i, sc in enumerate(rig.rec.screens) if "OK / Annuler" in sc][0]
        assert any("a9ym" in line for line in rig.rec.screens[first - 1])  # shown before
        for screen in rig.rec.screens[first:]:
            assert not any("a9ym" in line for line in screen), screen


async def test_ordinary_screen_is_still_restored_after_a_prompt():
    async with Rig(power=False) as rig:
        await rig.host.request(link.Display(["Carte lue"]))
        rig.typing(["OK"])
        await rig.host.request(link.Confirm(10, "Consentement ?"))
        assert rig.display.lines() == ["Carte lue"]


async def test_f1_shows_the_daemon_fingerprint_until_ok():
    async with Rig(power=False) as rig:
        rig.keys.push("F1")
        assert rig.display.lines()[:2] == ["Empreinte", "inconnue"]
        ack = await rig.host.request(link.Identity("3f2a 9c01 77de\n02b4 e5f6 a7b8"))
        assert ack.TYPE == link.ACK
        rig.keys.push("F1")
        assert rig.display.lines() == ["Empreinte edged", "3f2a 9c01 77de", "02b4 e5f6 a7b8",
                                       "F1: appairer"]
        assert rig.display.timed and not rig.display.secret
        rig.keys.push("OK")
        assert rig.display.lines() == []


async def test_f1_during_a_prompt_is_not_taken_as_a_request():
    async with Rig(power=False) as rig:
        await rig.host.request(link.Identity("3f2a"))
        task = asyncio.create_task(rig.host.request(link.Confirm(10, "Question ?")))
        while not rig.keys.claimed:
            await asyncio.sleep_ms(1)
        rig.keys.push("F1")  # the prompt holds the keys: F1 is one of its keys, ignored
        await settle(rig, 60)
        assert rig.display.lines() == ["Question ?", "OK / Annuler"]
        rig.keys.push("OK")
        result = await task
        assert result.result == link.CONFIRM_OK


# --- The pairing window (review L1): F1 twice asks edged; PAIR_WINDOW is counted down ----------

def window_screen(rig):
    """The seconds shown by the window screen, or None if it is not up."""
    lines = rig.display.lines()
    if not lines or lines[0] != "Appairage ouvert":
        return None
    return int(lines[1].split()[1])


async def test_f1_on_the_fingerprint_asks_edged_for_a_pairing_window():
    async with Rig(power=False) as rig:
        await rig.host.request(link.Identity("3f2a 9c01"))
        rig.keys.push("F1")  # the fingerprint alone asks for nothing
        await settle(rig)
        assert [e.kind for e in rig.host.events()] == []
        rig.keys.push("F1")
        await settle(rig)
        kinds = [(e.kind, e.slot) for e in rig.host.events()]
        assert kinds == [(link.EV_PAIR_REQUESTED, link.NO_SLOT)], kinds
        assert rig.display.lines() == ["Appairage", "demande envoyee"]
        rig.keys.push("F1")  # on another screen F1 shows the fingerprint again, no request
        await settle(rig)
        assert rig.display.lines()[0] == "Empreinte edged" and rig.host.events() == []


async def test_no_window_request_without_edged():
    async with Rig(power=False) as rig:  # handshaken, but edged never sent its IDENTITY
        rig.keys.push("F1")
        rig.keys.push("F1")
        await settle(rig)
        assert rig.host.events() == []
        assert rig.display.lines()[:2] == ["Empreinte", "inconnue"]
        await rig.host.request(link.Identity("3f2a 9c01"))
        refused = await rig.host.request(link.Hello(9))  # a host of another protocol
        assert refused.TYPE == link.ERROR and refused.code == link.E_BAD_VERSION
        rig.keys.push("F1")
        rig.keys.push("F1")
        await settle(rig)
        assert rig.host.events() == []
        assert rig.display.lines() == ["Appairage", "impossible :", "edged absent"]


async def test_the_window_is_counted_down_then_closed():
    async with Rig(power=False) as rig:
        ack = await rig.host.request(link.PairWindow(2))
        assert ack.TYPE == link.ACK
        assert window_screen(rig) == 2
        assert "Annuler: fermer" in rig.display.lines()
        await settle(rig, 1100)
        assert window_screen(rig) == 1
        await settle(rig, 1100)
        assert rig.display.lines() == ["Appairage ferme"]


async def test_pair_window_zero_closes_it_on_the_screen():
    async with Rig(power=False) as rig:
        await rig.host.request(link.PairWindow(60))
        assert window_screen(rig) == 60
        await rig.host.request(link.PairWindow(0))
        assert rig.display.lines() == ["Appairage ferme"]
        await settle(rig, 1100)
        assert rig.display.lines() == ["Appairage ferme"]  # no countdown behind it


async def test_a_code_ends_the_countdown_and_is_never_covered():
    async with Rig(power=False) as rig:
        await rig.host.request(link.PairWindow(60))
        await show_secret(rig)  # the pairing code edged shows once a client begins
        await settle(rig, 1200)
        assert shows_code(rig)  # the countdown did not write over it
        await rig.host.request(link.PairWindow(60))  # nor does a window opened meanwhile
        assert shows_code(rig)
        await rig.host.request(link.PairWindow(0))
        assert shows_code(rig)


async def test_pair_window_beyond_the_limit_is_refused():
    async with Rig(power=False) as rig:
        rig.port.host_send(link.encode_frame(40, link.PAIR_WINDOW, bytes((0x02, 0x59))))  # 601
        item = await rig.host.next()
        assert item.seq == 40 and item.mtype == link.ERROR, item
        assert link.decode(item.mtype, item.payload).code == link.E_BAD_PAYLOAD
        assert window_screen(rig) is None
