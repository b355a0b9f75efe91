"""Korean particles that depend on the word before them (을/를, 이/가, 은/는, 과/와, 으로/로).

A name that ends in a Hangul syllable with a final consonant (받침) takes the first form,
one without takes the second: 민준**을**, 마트**를**. Digits are read as Sino-Korean numbers.
Where the sound is not known (a Latin store name), both are written, as Korean forms do:
Demo Cycles**을(를)**.
"""

from __future__ import annotations

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_RIEUL = 8  # ㄹ as a final consonant: 으로 becomes 로 after it
# Final consonant index of each digit's reading: 영 일 이 삼 사 오 육 칠 팔 구.
_DIGIT_FINAL = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
PAIRS = {"을/를", "이/가", "은/는", "과/와", "으로/로"}


def particle(word: str, pair: str) -> str:
    """``word`` followed by the form of ``pair`` ("을/를") its last sound calls for."""
    if pair not in PAIRS:
        raise ValueError(f"unknown particle pair {pair!r} (known: {', '.join(sorted(PAIRS))})")
    with_final, without_final = pair.split("/")
    final = _final_consonant(word.rstrip())
    if final is None:
        return f"{word}{with_final}({without_final})"
    if pair == "으로/로" and final == _RIEUL:
        return word + without_final
    return word + (with_final if final else without_final)


def _final_consonant(word: str) -> int | None:
    """0 for none, the jongseong index otherwise, None when the sound is unknown."""
    if not word:
        return None
    last = word[-1]
    if _HANGUL_FIRST <= ord(last) <= _HANGUL_LAST:
        return (ord(last) - _HANGUL_FIRST) % 28
    return _DIGIT_FINAL.get(last)
