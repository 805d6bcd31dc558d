"""Textual key events as the bytes an xterm sends to the program in its terminal.

UI-free, so the table is tested without an app: :func:`encode_key` takes Textual's key name
(``"ctrl+a"``, ``"shift+up"``, ``"f5"``), the event's character, and whether the guest asked
for application cursor keys.
"""

from __future__ import annotations

ESC = "\x1b"

#: Keys with one fixed sequence, whatever the modes.
_PLAIN: dict[str, str] = {
    "enter": "\r",
    "backspace": "\x7f",
    "tab": "\t",
    "escape": ESC,
    "shift+tab": f"{ESC}[Z",
    "insert": f"{ESC}[2~",
    "delete": f"{ESC}[3~",
    "pageup": f"{ESC}[5~",
    "pagedown": f"{ESC}[6~",
    "space": " ",
    "ctrl+space": "\x00",
    "ctrl+at": "\x00",
    "ctrl+backslash": "\x1c",
    "ctrl+right_square_bracket": "\x1d",
    "ctrl+circumflex_accent": "\x1e",
    "ctrl+underscore": "\x1f",
    "ctrl+question_mark": "\x7f",
    "ctrl+h": "\x08",
}

#: Cursor keys and home/end: the final byte of ``CSI x`` / ``SS3 x``.
_CURSOR: dict[str, str] = {
    "up": "A",
    "down": "B",
    "right": "C",
    "left": "D",
    "home": "H",
    "end": "F",
}

#: ``CSI n ~`` keys, for their modified forms (``CSI n ; m ~``).
_TILDE: dict[str, str] = {"insert": "2", "delete": "3", "pageup": "5", "pagedown": "6"}

#: F1-F4 are ``SS3 P..S``; F5-F12 are ``CSI n ~``.
_FUNCTION_SS3: dict[str, str] = {"f1": "P", "f2": "Q", "f3": "R", "f4": "S"}
_FUNCTION_TILDE: dict[str, str] = {
    "f5": "15",
    "f6": "17",
    "f7": "18",
    "f8": "19",
    "f9": "20",
    "f10": "21",
    "f11": "23",
    "f12": "24",
}

#: xterm's modifier parameter: 1 + shift(1) + alt(2) + ctrl(4).
_MODIFIER_BITS = {"shift": 1, "alt": 2, "meta": 2, "ctrl": 4}


def _split(key: str) -> tuple[frozenset[str], str]:
    parts = key.split("+")
    modifiers = frozenset(parts[:-1])
    return modifiers, parts[-1]


def _modifier_parameter(modifiers: frozenset[str]) -> int:
    return 1 + sum(_MODIFIER_BITS.get(modifier, 0) for modifier in modifiers)


def encode_key(key: str, character: str | None, application_cursor: bool = False) -> bytes | None:
    """The bytes for a key press, or ``None`` for a key the terminal does not send."""
    if key in _PLAIN:
        return _PLAIN[key].encode()
    modifiers, base = _split(key)
    if modifiers - _MODIFIER_BITS.keys():
        return None
    if base in _CURSOR:
        final = _CURSOR[base]
        if modifiers:
            return f"{ESC}[1;{_modifier_parameter(modifiers)}{final}".encode()
        return f"{ESC}{'O' if application_cursor else '['}{final}".encode()
    if base in _TILDE:
        if modifiers:
            return f"{ESC}[{_TILDE[base]};{_modifier_parameter(modifiers)}~".encode()
        return f"{ESC}[{_TILDE[base]}~".encode()
    if base in _FUNCTION_SS3:
        if modifiers:
            return f"{ESC}[1;{_modifier_parameter(modifiers)}{_FUNCTION_SS3[base]}".encode()
        return f"{ESC}O{_FUNCTION_SS3[base]}".encode()
    if base in _FUNCTION_TILDE:
        if modifiers:
            return f"{ESC}[{_FUNCTION_TILDE[base]};{_modifier_parameter(modifiers)}~".encode()
        return f"{ESC}[{_FUNCTION_TILDE[base]}~".encode()
    alt = bool(modifiers & {"alt", "meta"})
    rest = modifiers - {"alt", "meta"}
    if alt:
        inner = encode_key("+".join([*sorted(rest), base]), character, application_cursor)
        if inner is None and len(base) == 1:
            inner = base.encode()
        return None if inner is None else ESC.encode() + inner
    if rest == {"ctrl"} and len(base) == 1 and base.isalpha() and base.isascii():
        return bytes([ord(base.lower()) - ord("a") + 1])
    if rest == {"ctrl"} and base in {"left_square_bracket"}:
        return ESC.encode()
    if rest <= {"shift"} and character and character.isprintable():
        return character.encode()
    if not modifiers and character and (character.isprintable() or character in "\r\t\x1b"):
        return character.encode()
    if not modifiers and character and len(character) == 1 and ord(character) < 0x20:
        return character.encode()
    return None
