"""Fake `rp2` for the unix port: asm_pio keeps the program, StateMachine queues FIFO words."""


class PIO:
    """Constants used by asm_pio and StateMachine.init."""

    IN_LOW = 0
    IN_HIGH = 1
    OUT_LOW = 2
    OUT_HIGH = 3
    SHIFT_LEFT = 0
    SHIFT_RIGHT = 1
    JOIN_NONE = 0
    JOIN_TX = 1
    JOIN_RX = 2


def asm_pio(**kwargs):
    """Return the program function untouched (its body is PIO assembly, never run here)."""

    def wrap(fn):
        fn_info = {"program": fn, "options": kwargs}
        return fn_info

    return wrap


class StateMachine:
    """TX words written by the firmware go to `tx_words`; tests put RX words in `rx_words`."""

    def __init__(self, sm_id, program=None, **kwargs):
        self.id = sm_id
        self.program = program
        self.options = kwargs
        self.running = False
        self.tx_words = []
        self.rx_words = []
        self.execs = []
        self.restarts = 0

    def init(self, program, **kwargs):
        """Load a program with options (freq, pin bases)."""
        self.program = program
        self.options = kwargs

    def exec(self, instr):
        """Record an immediately executed instruction."""
        self.execs.append(instr)

    def active(self, value=None):
        """Start, stop or query the state machine."""
        if value is None:
            return self.running
        self.running = bool(value)
        return None

    def restart(self):
        """Record a restart."""
        self.restarts += 1

    def put(self, word):
        """Queue a TX word."""
        self.tx_words.append(word)

    def get(self):
        """Take an RX word."""
        return self.rx_words.pop(0)

    def rx_fifo(self):
        """Words waiting in the RX FIFO."""
        return len(self.rx_words)

    def tx_fifo(self):
        """Words waiting in the TX FIFO (the fake drains instantly)."""
        return 0
