"""Display: wrapping, read-back, and the SSD1306 renderer over a fake I2C bus."""

import display
import machine


def test_wrap_words_lines_and_rows():
    assert display.wrap("Code porteur de la carte CPS") == ["Code porteur de", "la carte CPS"]
    assert display.wrap("A\n\nB") == ["A", "", "B"]
    assert display.wrap("x" * 20) == ["x" * 16, "xxxx"]
    assert len(display.wrap("\n".join("l" * 10))) == display.ROWS


def test_text_display_reads_back_and_replaces_non_ascii():
    d = display.TextDisplay()
    d.show(["Insérez la carte", "OK"])
    assert d.lines() == ["Ins?rez la carte", "OK"]
    assert d.text() == "Ins?rez la carte\nOK"
    d.clear()
    assert d.lines() == []


def test_at_most_eight_rows():
    d = display.TextDisplay()
    d.show([str(i) for i in range(12)])
    assert d.lines() == [str(i) for i in range(8)]


def test_ssd1306_init_and_render():
    i2c = machine.I2C(1)
    oled = display.SSD1306(i2c, 0x3C, 128, 64)
    cmds = [w[1][1] for w in i2c.writes]
    assert cmds[0] == 0xAE and cmds[-1] == 0xAF and 0x8D in cmds  # display on, charge pump
    d = display.TextDisplay(oled)
    d.show(["Code porteur :", "****"])
    addr, frame = i2c.writes[-1]
    assert addr == 0x3C and len(frame) == 1 + 128 * 64 // 8 and frame[0] == 0x40
    assert any(frame[1:129]) and any(frame[129:257]) and not any(frame[257:])
