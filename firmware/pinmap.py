"""Terminal pin map: the only place GPIO numbers live; hardware/PINMAP.md is generated from it."""
# Board: Raspberry Pi Pico (RP2040), two NXP TDA8035HN card interfaces, 4x4 keypad, SSD1306.
# Edit this file, then run `python3 hardware/gen_docs.py`; tests/hardware checks both agree.
# Signal names follow the TDA8035 data sheet: CMDVCCN, 5V3VN, OFFN and PRESN are active low.
# Plain MicroPython (no typing imports); must compile with `mpy-cross -march=armv6m`.

try:
    from micropython import const
except ImportError:  # CPython (doc generator, tests) has no micropython module

    def const(x):
        return x


# --- Clock plan -----------------------------------------------------------------------------
# Card clock = sysclk / 32 from a PWM slice (divider 1, TOP 31, level 16: 50 % duty).
# 125 MHz / 32 = 3.90625 MHz, inside 1..5 MHz (ISO 7816-3 Table 7, Fi = 372).
# Default etu = 372 / f = 95.232 us = 372 * 32 = 11904 sysclk cycles: the PIO divider is exact.
# The firmware must call machine.freq(SYS_CLK_HZ) at boot so these numbers hold on every build.
SYS_CLK_HZ = const(125_000_000)
CARD_CLK_DIV = const(32)
CARD_CLK_HZ = const(3_906_250)  # SYS_CLK_HZ // CARD_CLK_DIV
CARD_PIO = const(0)  # PIO block for both card I/O lines (RP2040 PL011 UARTs have no ISO 7816 mode)

# --- Card slot 0: CPS (professional card) --------------------------------------------------
SLOT0_PRES = const(0)  # card-detect switch (PRESN net), low = card present
SLOT0_OFF = const(1)  # TDA8035 OFFN, open drain: low = no card (inactive) or fault (active)
SLOT0_CLK = const(2)  # TDA8035 XTAL1, PWM slice 1 channel A
SLOT0_IO = const(3)  # TDA8035 IOUC, PIO open drain (drive low or release)
SLOT0_RST = const(4)  # TDA8035 RSTIN, copied to card RST (C2) while active
SLOT0_CMDVCC = const(5)  # TDA8035 CMDVCCN: falling edge starts activation, high deactivates
SLOT0_5V3V = const(6)  # TDA8035 5V3VN: high = 5 V (class A), low = 3 V (class B)

# --- Card slot 1: Vitale (patient card), same layout shifted by 7 --------------------------
SLOT1_PRES = const(7)
SLOT1_OFF = const(8)
SLOT1_CLK = const(9)  # PWM slice 4 channel B
SLOT1_IO = const(10)
SLOT1_RST = const(11)
SLOT1_CMDVCC = const(12)
SLOT1_5V3V = const(13)

# Both TDA8035 1V8N pins are strapped high: no class C (1.8 V); CPS and Vitale use 5 V or 3 V.
SLOT_1V8_WIRED = const(0)

# Logic levels at the RP2040 pins.
PRES_CARD = const(0)  # SLOTn_PRES level when a card is inserted (switch closes to GND)
OFF_ACTIVE = const(0)  # SLOTn_OFF level for "no card" or "fault"
CMDVCC_ON = const(0)  # SLOTn_CMDVCC level that keeps the card powered
VSEL_5V = const(1)  # SLOTn_5V3V level for class A; 0 selects class B (3 V)

SLOT_SIGNALS = ("PRES", "OFF", "CLK", "IO", "RST", "CMDVCC", "5V3V")
SLOTS = (
    (SLOT0_PRES, SLOT0_OFF, SLOT0_CLK, SLOT0_IO, SLOT0_RST, SLOT0_CMDVCC, SLOT0_5V3V),
    (SLOT1_PRES, SLOT1_OFF, SLOT1_CLK, SLOT1_IO, SLOT1_RST, SLOT1_CMDVCC, SLOT1_5V3V),
)

# --- Display: SSD1306 128x64 OLED on I2C1 ----------------------------------------------------
I2C_ID = const(1)
I2C_SDA = const(14)  # I2C1 SDA
I2C_SCL = const(15)  # I2C1 SCL
I2C_FREQ = const(400_000)
OLED_ADDR = const(0x3C)
OLED_WIDTH = const(128)
OLED_HEIGHT = const(64)

# --- Keypad: 4x4 matrix; rows are driven low one at a time, columns read with pull-ups ------
KEYPAD_ROWS = (16, 17, 18, 19)
KEYPAD_COLS = (20, 21, 22, 26)
# Printed A/B/C/D keys of a stock 4x4 keypad carry CANCEL (red), CORR (yellow), F1, OK (green).
KEYMAP = (
    ("1", "2", "3", "CANCEL"),
    ("4", "5", "6", "CORR"),
    ("7", "8", "9", "F1"),
    ("*", "0", "#", "OK"),
)

# --- Feedback ---------------------------------------------------------------------------------
BUZZER = const(27)  # passive piezo, PWM slice 5 channel B
BUZZER_HZ = const(4000)  # rated frequency of the Murata PKMCS0909E4000-R1 sounder
LED_STATUS = const(28)  # bicolour pair: drive 1 = green, drive 0 = red, input = both off
LED_BOARD = const(25)  # Pico on-board LED (on a Pico W, GP25 belongs to the radio)

# --- The table the doc generator and the tests read: (gpio, name, direction, description) ---
PINS = (
    (SLOT0_PRES, "SLOT0_PRES", "in", "Slot 0 (CPS) card-detect switch (PRESN); low = card in"),
    (SLOT0_OFF, "SLOT0_OFF", "in", "Slot 0 TDA8035 OFFN (open drain); low = no card or fault"),
    (SLOT0_CLK, "SLOT0_CLK", "out", "Slot 0 card clock to TDA8035 XTAL1; PWM1 A, 3.906 MHz"),
    (SLOT0_IO, "SLOT0_IO", "io", "Slot 0 TDA8035 IOUC; PIO0, open drain, etu = 372/f"),
    (SLOT0_RST, "SLOT0_RST", "out", "Slot 0 TDA8035 RSTIN (card RST, C2)"),
    (SLOT0_CMDVCC, "SLOT0_CMDVCC", "out", "Slot 0 TDA8035 CMDVCCN; low = activate; 10k pull-up"),
    (SLOT0_5V3V, "SLOT0_5V3V", "out", "Slot 0 TDA8035 5V3VN; high = 5 V, low = 3 V"),
    (SLOT1_PRES, "SLOT1_PRES", "in", "Slot 1 (Vitale) card-detect switch (PRESN); low = card in"),
    (SLOT1_OFF, "SLOT1_OFF", "in", "Slot 1 TDA8035 OFFN (open drain); low = no card or fault"),
    (SLOT1_CLK, "SLOT1_CLK", "out", "Slot 1 card clock to TDA8035 XTAL1; PWM4 B, 3.906 MHz"),
    (SLOT1_IO, "SLOT1_IO", "io", "Slot 1 TDA8035 IOUC; PIO0, open drain, etu = 372/f"),
    (SLOT1_RST, "SLOT1_RST", "out", "Slot 1 TDA8035 RSTIN (card RST, C2)"),
    (SLOT1_CMDVCC, "SLOT1_CMDVCC", "out", "Slot 1 TDA8035 CMDVCCN; low = activate; 10k pull-up"),
    (SLOT1_5V3V, "SLOT1_5V3V", "out", "Slot 1 TDA8035 5V3VN; high = 5 V, low = 3 V"),
    (I2C_SDA, "I2C_SDA", "io", "I2C1 SDA to the SSD1306 OLED (address 0x3C)"),
    (I2C_SCL, "I2C_SCL", "out", "I2C1 SCL to the SSD1306 OLED, 400 kHz"),
    (KEYPAD_ROWS[0], "KEYPAD_ROW0", "out", "Keypad row 0: 1 2 3 CANCEL (driven low to scan)"),
    (KEYPAD_ROWS[1], "KEYPAD_ROW1", "out", "Keypad row 1: 4 5 6 CORR"),
    (KEYPAD_ROWS[2], "KEYPAD_ROW2", "out", "Keypad row 2: 7 8 9 F1"),
    (KEYPAD_ROWS[3], "KEYPAD_ROW3", "out", "Keypad row 3: * 0 # OK"),
    (KEYPAD_COLS[0], "KEYPAD_COL0", "in", "Keypad column 0 (pull-up): 1 4 7 *"),
    (KEYPAD_COLS[1], "KEYPAD_COL1", "in", "Keypad column 1 (pull-up): 2 5 8 0"),
    (KEYPAD_COLS[2], "KEYPAD_COL2", "in", "Keypad column 2 (pull-up): 3 6 9 #"),
    (KEYPAD_COLS[3], "KEYPAD_COL3", "in", "Keypad column 3 (pull-up): CANCEL CORR F1 OK"),
    (BUZZER, "BUZZER", "out", "Piezo buzzer via 100R; PWM5 B, 4 kHz"),
    (LED_STATUS, "LED_STATUS", "out", "Bicolour status LED pair: 1 = green, 0 = red, input = off"),
    (LED_BOARD, "LED_BOARD", "out", "Pico on-board LED (heartbeat); not on the header"),
)
