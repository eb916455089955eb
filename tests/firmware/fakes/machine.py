"""Fake `machine` for the MicroPython unix port: Pin, PWM, I2C and freq record what they see."""

_freq = [125_000_000]


def freq(hz=None):
    """Get or set the system clock (recorded only)."""
    if hz is None:
        return _freq[0]
    _freq[0] = hz
    return None


class Pin:
    """A GPIO whose level can be read back; `reader` (a callable) overrides value() reads."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, pin_id, mode=-1, pull=-1, value=None):
        self.id = pin_id
        self.mode = mode
        self.pull = pull
        self.reader = None
        self.log = []
        if value is None:
            value = 1 if pull == Pin.PULL_UP or mode == Pin.OPEN_DRAIN else 0
        self._value = 1 if value else 0

    def init(self, mode=-1, pull=-1, value=None):
        """Change mode, pull or level."""
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        """Read (through reader if set) or drive the level."""
        if v is None:
            return self.reader() if self.reader is not None else self._value
        self._value = 1 if v else 0
        self.log.append(self._value)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        """Drive high."""
        self.value(1)

    def off(self):
        """Drive low."""
        self.value(0)

    def toggle(self):
        """Invert the level."""
        self.value(0 if self._value else 1)


class PWM:
    """Records frequency and duty."""

    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin = pin
        self._freq = freq
        self._duty = duty_u16

    def freq(self, hz=None):
        """Get or set the frequency."""
        if hz is None:
            return self._freq
        self._freq = hz
        return None

    def duty_u16(self, d=None):
        """Get or set the duty cycle."""
        if d is None:
            return self._duty
        self._duty = d
        return None

    def deinit(self):
        """Stop."""
        self._duty = 0


class I2C:
    """Records every write as (address, bytes)."""

    def __init__(self, bus_id=0, scl=None, sda=None, freq=400_000):
        self.bus_id = bus_id
        self.writes = []

    def writeto(self, addr, buf, stop=True):
        """Record a write; returns the number of acknowledged bytes."""
        self.writes.append((addr, bytes(buf)))
        return len(buf)

    def scan(self):
        """Devices that answer: an SSD1306 at 0x3C."""
        return [0x3C]
