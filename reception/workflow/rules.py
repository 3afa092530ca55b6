"""Rule-based language understanding of one visitor utterance, Japanese and English, offline.

janome and patterns for Japanese, regular expressions for English; the staff directory is the gazetteer of hosts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import jaconv
from janome.tokenizer import Tokenizer

from core.logs import adopt_loggers

from .names import EN_TITLE, JA_LEGAL_FORMS, Person, find_in_text, reading_of, staff_directory, strip_honorifics
from .state import VISIT_FIELDS
from .times import APPOINTMENT_STATEMENT, appointment_at, appointment_purpose, parse_time
from .understanding import (
    EXPECT_CONFIRMATION,
    EXPECT_HOST_CHOICE,
    LanguageUnderstanding,
    Understanding,
    is_polite_only,
)

adopt_loggers("janome")  # janome gives its loggers handlers of their own at import


_JA_YES = re.compile(
    r"^(?:はい|ええ|うん|そうです|その通り|そのとおり|合って|あって|大丈夫|間違いない|間違いありません|問題ありません|OK|オーケー)"
)
_JA_NO = re.compile(r"^(?:いいえ|いえ|違います|ちがいます|違う|ちがう|間違って|まちがって|いや)")
_JA_CORRECTION = re.compile(r"ではなく|じゃなくて|でなくて|ではありません|訂正|言い間違え|間違えました")
# 「鈴木さんではなく佐藤さんです」, "not Ken Sato but Ichiro Tanaka": what was wrong, and what replaces it.
_JA_REPLACEMENT = re.compile(
    r"(?:^|[、。,\s])(?P<old>[^、。,\s]{1,20}?)(?:ではなく|じゃなくて|でなくて)[、,\s]*(?P<new>[^、。,\s]{1,20}?)"
    r"(?:です|でございます|と申します|になります)?[。.!?]*$"
)
_EN_REPLACEMENT = re.compile(r"\bnot\s+(?P<old>[^.,!?]+?)\s*,?\s+but\s+(?P<new>[^.,!?]+)", re.I)
_JA_DELIVERY = re.compile(r"お届け|届け物|宅配|配達|荷物|郵便|宅急便|ゆうパック|納品|配送|集荷|お荷物")
_JA_SIGNATURE = re.compile(r"印鑑|ハンコ|はんこ|判子|サイン|署名|受領印|受け取りの?確認")
# The same words by their reading: recognition writes 受領印 with other kanji of that sound (「受量印」).
_JA_SIGNATURE_SAID = re.compile(r"じゅう?りょういん|いんかん|はんこ|しょめい")
_JA_SALES = re.compile(r"営業に|ご紹介|ご案内|ご提案|売り込み|新商品|新サービス|セールス|飛び込み|営業で|商品の")
_JA_APPOINTMENT = re.compile(r"約束|アポ|予約|お待ち合わせ|面接|面談|打ち合わせ|打合せ|会議|ミーティング")
_JA_PURPOSE_WORDS = re.compile(
    r"約束|アポ|予約|打ち合わせ|打合せ|ミーティング|会議|面接|面談|商談|相談|件|紹介|案内|提案|挨拶|"
    r"営業|見学|説明|契約|修理|点検|納品|訪問|取材|セミナー|研修|用事|届け|配達|宅配|荷物|打診|見積"
)
_JA_COMPANY_PREFIX = rf"(?:{JA_LEGAL_FORMS}|一般社団法人)"
_JA_COMPANY_SUFFIX = (
    rf"(?:{JA_LEGAL_FORMS}|商事|工業|銀行|物産|産業|電機|製作所|運輸|急便|通運|"
    r"ホールディングス|システムズ|(?<![御弊貴当会])社)"
)
_JA_AFTER_COMPANY = r"(?=の|から|より|で|、|。|\s|です|でございます|と申|$)"
_JA_NAME_END = r"(?:と申します|ともうします|と申す者です|と言います|といいます|でございます|です)"
_JA_SELF = re.compile(
    r"^(?:会社名は|社名は|会社は|私は|わたくしは|わたしは|私|わたくし|わたし|僕は|ぼくは|こちらは|名前は|お名前は)"
)
_JA_NOT_NAMES = (
    "そう",
    "大丈夫",
    "以上",
    "結構",
    "それ",
    "これ",
    "了解",
    "お願い",
    "宜しく",
    "よろしく",
    "ここ",
    "個人",
)
# The honorifics a visitor puts after the name of the person visited.
_JA_HONORIFICS = ("さん", "様", "さま", "氏", "殿", "くん", "君")
_JA_HONORIFIC = rf"(?:{'|'.join(_JA_HONORIFICS)})"
_JA_HONORIFIC_AT = re.compile(rf"(?={_JA_HONORIFIC})")
_JA_DEPT = re.compile(
    r"([^\s、。,のとにをは]{1,12}?(?:部|課|室|センター|チーム|グループ))(?:の|にいる|にいらっしゃる|)"
)
_JA_VERB_TAIL = re.compile(
    r"(?:をしています|しています|しております|をしております|でお伺いしました|で伺いました|で参りました|で来ました|"
    r"に参りました|に来ました|に伺いました|にまいりました|にきました|をお願いします|をお願いしたい|があります|がございます|"
    r"をいただいています|をいただいております|いただいています|で|です|に|を|が|のため)$"
)

_EN_YES = re.compile(
    r"^(?:yes|yeah|yep|yup|correct|that's right|that is right|right|sure|ok|okay|exactly|all correct|perfect)\b",
    re.I,
)
_EN_NO = re.compile(r"^(?:no|nope|wrong|incorrect|not quite|that's wrong|that is wrong|that's not right)\b", re.I)
_EN_CORRECTION = re.compile(r"^(?:no|nope|actually|sorry|i mean|correction|wait)\b|\bnot\b.+\bbut\b", re.I)
_EN_DELIVERY = re.compile(r"\b(?:deliver(?:y|ies|ing)?|package|parcel|courier|shipment|mail)\b", re.I)
_EN_SIGNATURE = re.compile(r"\b(?:sign(?:ature|ed)?|stamp)\b", re.I)
_EN_SALES = re.compile(
    r"\b(?:sales|introduce|our (?:new )?(?:product|service)s?|demo|promotion|proposal|pitch|sell)\b", re.I
)
_EN_APPOINTMENT = re.compile(r"\b(?:appointment|scheduled|expecting me|meeting|interview)\b", re.I)
_EN_STOP = (
    "from|with|of|and|here|to|for|at|the|a|an|about|regarding|delivering|looking|calling|visiting|"
    "i|i'm|im|who|is|am|are|today|please|in|on|my|just|coming|came|have|has|expected"
)
_EN_NAME_WORD = r"(?:[A-Za-z][A-Za-z'\-]*\.?)"
_EN_NAME = re.compile(
    rf"\b(?:my name is|my name's|name is|i am|i'm|im|this is|it's|call me)\s+((?!(?:{_EN_STOP})\b){_EN_NAME_WORD}"
    rf"(?:\s+(?!(?:{_EN_STOP})\b){_EN_NAME_WORD}){{0,2}})",
    re.I,
)
_EN_COMPANY = re.compile(
    rf"\b(?:from|with|representing|work for|work at|company is)\s+((?!(?:{_EN_STOP}|mr|ms|mrs|dr)\b)"
    rf"[A-Za-z0-9&][\w&.'\-]*(?:\s+(?!(?:{_EN_STOP})\b)[A-Za-z0-9&][\w&.'\-]*){{0,4}})",
    re.I,
)
_EN_TITLE = rf"(?:{EN_TITLE})"
_EN_HOST = re.compile(
    rf"\b(?:to see|to meet|meeting with|meet with|appointment with|meeting|visiting|visit|looking for|ask for|"
    rf"asking for|speak to|speak with|talk to|here for|call|with)\s+({_EN_TITLE}?(?!(?:{_EN_STOP})\b)"
    rf"[A-Za-z][\w'\-]*(?:[\s\-]+(?!(?:{_EN_STOP})\b)[A-Za-z][\w'\-]*)?)",
    re.I,
)
_EN_DEPT = re.compile(r"\b(?:in |of |from )?(?:the )?([A-Za-z]+) (?:department|dept|team|division)\b", re.I)
_EN_PURPOSE = re.compile(
    r"\b(?:about|regarding|concerning|to discuss|for)\s+((?:the |a |an |our |my )?(?!(?:mr|ms|mrs|dr)\b)[^.,!?]+?)"
    r"(?=[.,!?]|$| and | with )",
    re.I,
)
_EN_PURPOSE_NOUN = re.compile(
    r"\b(a |an |the |my |our )?((?:\d{1,2}(?::\d\d)?\s*(?:am|pm|o'clock)?\s*)?"
    r"(?:meeting|interview|appointment|presentation|demo|delivery|job interview))\b",
    re.I,
)
_EN_WISH = re.compile(
    r"\b(?:i'd like to|i would like to|i want to|we'd like to|i'm here to|i am here to|here to)\s+"
    r"(?!see\b|meet\b|visit\b)([^.,!?]+)",
    re.I,
)
_EN_COMPANY_NONE = re.compile(r"\b(?:no company|none|individual|myself|personal|private|not with a company)\b", re.I)
_FILLERS = re.compile(r"^(?:えー+と?|ええと|えっと|あの+ー*|あー+|うーん|んー|um+|uh+|er+|hmm+|well)[、,.\s]*", re.I)
# A bare answer ending as a verb (「おめがいします」, a misheard お願いします) names no one and no company.
_JA_VERB_END = re.compile(r"(?:ます|ました|ません|ください)$")
_JA_COMPANY_NONE = re.compile(r"^(?:個人|なし|ありません|特にありません|無所属|フリー)")


@lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    return Tokenizer()


_BRACKETS = str.maketrans("", "", '()[]{}「」『』【】〈〉《》"')


@dataclass(frozen=True)
class _NameParts:
    hiragana: frozenset[str]
    longest: int


@lru_cache(maxsize=8)
def _ja_name_parts(names: tuple[tuple[str, str], ...]) -> _NameParts:
    """The staff's names and readings, whole and by word, in hiragana: what may stand before さん or 様."""
    parts = set()
    for sources in names:
        for source in sources:
            words = [jaconv.kata2hira(w) for w in re.split(r"[\s・]+", source) if w]
            parts.update(["".join(words), *words])
    parts.discard("")
    return _NameParts(frozenset(parts), max(map(len, parts), default=0))


# Whisper writes a さん after a name as the digit (「田中一郎3にご挨拶に」): a 3 between a written name and a particle.
_SAN_AS_DIGIT = re.compile(r"(?<=[\u4e00-\u9fff]{2})3(?=[にとがのへはを、。]|$)")


def _clean(text: str) -> str:
    """NFKC, without brackets and quotes (speech recognition sprinkles them, and no field needs them), さん for 3."""
    return _SAN_AS_DIGIT.sub("さん", unicodedata.normalize("NFKC", text).translate(_BRACKETS)).strip()


def _title(name: str) -> str:
    return " ".join(w if w.isupper() and len(w) > 1 else w[:1].upper() + w[1:] for w in name.split())


def _trim_en(phrase: str) -> str:
    words = phrase.strip(" .,!?").split()
    stop = set(_EN_STOP.split("|"))
    while words and words[-1].lower().strip(".") in stop:
        words.pop()
    return " ".join(words).strip(" .,!?")


class RuleBasedUnderstanding(LanguageUnderstanding):
    """Patterns plus janome for Japanese, regular expressions for English; the staff directory is the gazetteer."""

    def __init__(self, directory: Callable[[], Sequence[Person]] = staff_directory) -> None:
        self._directory = directory

    def understand(self, text: str, language: str, expecting: str = "") -> Understanding:
        """Fields, yes/no, correction and delivery hints of one utterance; unknown parts stay empty."""
        text = _FILLERS.sub("", _clean(text)).strip()
        if not text:
            return Understanding()
        japanese = language == "ja" or bool(re.search(r"[぀-ヿ一-鿿]", text))
        result = self._japanese(text, expecting) if japanese else self._english(text, expecting)
        if result.host_name and result.host_name == result.visitor_name:
            result.host_name = ""
        return result

    # --- Japanese --------------------------------------------------------------------------------------------

    def _japanese(self, text: str, expecting: str) -> Understanding:
        u = Understanding()
        if _JA_YES.match(text):
            u.answer = True
        elif _JA_NO.match(text):
            u.answer = False
        u.is_correction = u.answer is False or bool(_JA_CORRECTION.search(text))
        body = _JA_YES.sub("", _JA_NO.sub("", text)).lstrip("、。, ")
        replacement = _JA_REPLACEMENT.search(body)
        # What the visitor says is wrong (「お届けではなく佐藤です」: お届け misheard) makes no kind of visit.
        kind = body[: replacement.start("old")] + body[replacement.end("old") :] if replacement else body
        if _JA_DELIVERY.search(kind):
            u.visitor_type = "delivery"
            u.needs_signature = bool(_JA_SIGNATURE.search(kind) or _JA_SIGNATURE_SAID.search(reading_of(kind)))
            u.purpose = "お届け物（受領サインが必要）" if u.needs_signature else "お届け物"
        elif _JA_SALES.search(kind):
            u.visitor_type = "sales"
        elif _JA_APPOINTMENT.search(kind):
            u.visitor_type = "appointment"

        u.host_name, u.host_department = self._ja_host(body)
        # 「違います、山川です」 at confirmation is a new name; 「はい、そうです」 is not.
        bare_name = expecting in ("", "visitor_name") or (expecting == EXPECT_CONFIRMATION and u.answer is False)
        u.visitor_name = self._ja_visitor_name(body, u.host_name, bare_name)
        u.company_name = self._ja_company(body, u.visitor_name)
        if not u.purpose:
            u.purpose = appointment_purpose(kind, "ja") or self._ja_purpose(kind)

        if expecting in VISIT_FIELDS and not getattr(u, expecting) and body:
            bare = self._ja_bare(body)
            if expecting == "company_name" and _JA_COMPANY_NONE.match(body):
                u.company_name = "個人"
            elif (
                bare
                and u.visitor_type != "delivery"  # 「お届け物」 answers no question with a name or a company
                and not is_polite_only(bare)
                and not _JA_VERB_END.search(bare)
                and not (u.found() and expecting != "host_name")
            ):
                setattr(u, expecting, strip_honorifics(bare) if expecting in ("host_name", "visitor_name") else bare)
        if expecting == EXPECT_HOST_CHOICE and not u.host_department:
            dept = _JA_DEPT.search(body)
            u.host_department = dept.group(1) if dept else self._ja_bare(body)
        return self._replaced(u, replacement, "ja")

    def _ja_host(self, text: str) -> tuple[str, str]:
        host = self._ja_known_host(text)
        tokens = [] if host else list(_tokenizer().tokenize(text))
        for i, tok in enumerate(tokens):
            if tok.part_of_speech.startswith("名詞,接尾,人名") and tok.surface in _JA_HONORIFICS:
                j = i
                while j > 0 and tokens[j - 1].part_of_speech.startswith("名詞") and i - j < 3:
                    j -= 1
                host = "".join(t.surface for t in tokens[j:i])
                if host:
                    break
        if not host:
            match = re.search(rf"([ぁ-んァ-ヶー一-龥々]{{1,8}}?){_JA_HONORIFIC}(?:に|と|へ|を|は|の|、|。|で|$)", text)
            if match and match.group(1) not in ("皆", "お客"):
                host = re.sub(r"^.*[のとにをはが]", "", match.group(1)) or match.group(1)
        if not host:
            context = re.search(
                r"(\S{1,12}?)(?:に会い|にお会い|に面会|を呼んで|をお願い|とお約束|と約束|はいらっしゃいますか)", text
            )
            if context:
                people = find_in_text(context.group(1), self._directory())
                if people:
                    host = re.sub(r"^.*[のとにをはが]", "", context.group(1))
        department = ""
        if host:
            dept = re.search(
                rf"([^\s、。,のとにをは]{{1,12}}?(?:部|課|室|センター|チーム|グループ))の?{re.escape(host)}", text
            )
            department = dept.group(1) if dept else ""
            host = re.sub(rf"^{re.escape(department)}の?", "", host) if department else host
        return strip_honorifics(host), department

    def _ja_known_host(self, text: str) -> str:
        """A staff name part (kanji or kana, full name first) written with an honorific."""
        hira = jaconv.kata2hira(text)
        honorifics = [m.start() for m in _JA_HONORIFIC_AT.finditer(hira)]
        if not honorifics:
            return ""
        parts = _ja_name_parts(tuple((p.name, p.reading) for p in self._directory()))
        said = [
            (length, at - length)
            for at in honorifics
            for length in range(min(at, parts.longest), 0, -1)
            if hira[at - length : at] in parts.hiragana
        ]
        if not said:
            return ""
        # The longest name part said right before an honorific; on a tie, the one said first.
        length, start = max(said, key=lambda found: (found[0], -found[1]))
        return text[start : start + length]

    def _ja_visitor_name(self, text: str, host: str, bare_allowed: bool) -> str:
        tokens = list(_tokenizer().tokenize(text))
        for i, tok in enumerate(tokens):
            if not tok.part_of_speech.startswith("名詞,固有名詞,人名"):
                continue
            j = i
            while j + 1 < len(tokens) and tokens[j + 1].part_of_speech.startswith("名詞,固有名詞,人名"):
                j += 1
            name = "".join(t.surface for t in tokens[i : j + 1])
            rest = "".join(t.surface for t in tokens[j + 1 :])
            if name != host and re.match(_JA_NAME_END, rest):
                return name
        start = "^|私は|わたくしは|わたしは|名前は|の" if bare_allowed else "私は|わたくしは|わたしは|名前は|の"
        match = re.search(rf"(?:{start})([^\s、。,!?のはがをにとでから]{{1,10}}?){_JA_NAME_END}", text)
        said = match.group(1) if match else ""
        if (
            said
            and not _JA_PURPOSE_WORDS.search(said)
            and said not in (host, *_JA_NOT_NAMES)
            and not is_polite_only(said)
        ):
            name = match.group(1)
            return "" if re.search(_JA_COMPANY_SUFFIX + "$", name) else name
        return ""

    def _ja_company(self, text: str, visitor_name: str) -> str:
        company = self._ja_company_said(text, visitor_name)
        return "" if is_polite_only(company) else company

    @staticmethod
    def _ja_company_said(text: str, visitor_name: str) -> str:
        body = _JA_SELF.sub("", text)
        for pattern in (
            rf"({_JA_COMPANY_PREFIX}\s*[^\s、。,のからより]+?){_JA_AFTER_COMPANY}",
            rf"([^\s、。,]+?{_JA_COMPANY_SUFFIX}){_JA_AFTER_COMPANY}",
            r"([^\s、。,]+?)から(?:参りました|まいりました|来ました|きました|伺いました|うかがいました|の)",
        ):
            match = re.search(pattern, body)
            if match and not re.search(r"\d|時", match.group(1)):
                return _JA_SELF.sub("", match.group(1))
        if visitor_name:
            match = re.search(rf"([^\s、。,]+?)の{re.escape(visitor_name)}", body)
            if match and not re.search(r"部|課|室", match.group(1)):
                return _JA_SELF.sub("", match.group(1))
        return ""

    def _ja_purpose(self, text: str) -> str:
        for clause in re.split(r"[。、,!?！？]", text):
            if not _JA_PURPOSE_WORDS.search(clause):
                continue
            # Drop the host and company mentions in front of the purpose itself.
            clause = re.sub(rf"^.*?{_JA_HONORIFIC}(?:との|と|に|へ|を)?", "", clause)
            clause = re.sub(r"^.*?(?:から|より)(?:参りました|来ました|伺いました)?", "", clause) or clause
            for _ in range(3):
                clause = _JA_VERB_TAIL.sub("", clause)
            clause = re.sub(r"^(?:本日は|今日は|きょうは)", "", clause).strip()
            if clause:
                return clause
        return ""

    @staticmethod
    def _ja_bare(text: str) -> str:
        bare = _JA_SELF.sub("", text.strip("。、,.!?！？ "))
        bare = re.sub(
            rf"(?:{_JA_NAME_END}|から(?:参りました|来ました|伺いました)|です|でお願いします|をお願いします)$", "", bare
        )
        return bare.strip("。、,.!?！？ ")[:100]

    # --- English ---------------------------------------------------------------------------------------------

    def _english(self, text: str, expecting: str) -> Understanding:
        u = Understanding()
        if _EN_YES.match(text):
            u.answer = True
        elif _EN_NO.match(text):
            u.answer = False
        u.is_correction = bool(_EN_CORRECTION.search(text))
        if _EN_DELIVERY.search(text):
            u.visitor_type = "delivery"
            u.needs_signature = bool(_EN_SIGNATURE.search(text))
            u.purpose = "delivery (signature needed)" if u.needs_signature else "delivery"
        elif _EN_SALES.search(text):
            u.visitor_type = "sales"
        elif _EN_APPOINTMENT.search(text):
            u.visitor_type = "appointment"

        name = _EN_NAME.search(text)
        if name:
            u.visitor_name = _title(_trim_en(name.group(1)))
        company = _EN_COMPANY.search(text)
        if company and not re.match(rf"{_EN_TITLE}", company.group(1), re.I):
            u.company_name = _trim_en(company.group(1))
        u.host_name = self._en_host(text, u.visitor_name)
        if u.company_name and u.host_name and u.company_name.lower() in u.host_name.lower():
            u.company_name = ""
        dept = _EN_DEPT.search(text)
        u.host_department = dept.group(1) if dept else ""
        u.purpose = u.purpose or self._en_purpose(text)

        if expecting in VISIT_FIELDS and not getattr(u, expecting):
            bare = re.sub(
                r"^(?:it's|it is|i'm|i am|my name is|we are|we're|from|with|to see|i'm here to see|here to see|"
                r"i'd like to see|for|about)\s+",
                "",
                text.strip(" .!?"),
                flags=re.I,
            )
            if expecting == "company_name" and _EN_COMPANY_NONE.search(text):
                u.company_name = "Individual"
            elif (
                bare
                and len(bare.split()) <= 8
                and u.answer is None
                and u.visitor_type != "delivery"
                and not is_polite_only(bare)
                and not (u.found() and expecting != "host_name")
            ):
                value = _title(bare) if expecting in ("visitor_name", "host_name", "company_name") else bare
                setattr(u, expecting, strip_honorifics(value) if expecting != "company_name" else value)
        if expecting == EXPECT_HOST_CHOICE and not u.host_department:
            u.host_department = text.strip(" .!?")
        return self._replaced(u, _EN_REPLACEMENT.search(text), "en")

    def _replaced(self, u: Understanding, said: re.Match | None, language: str) -> Understanding:
        """Not A but B: B replaces A in the field A names (a host when A is one of the staff or is said with an
        honorific, a company when A is one, the appointment's time when both are times, a host again when A is
        none of these but B is one of the staff (A was misheard), else the visitor's name); neither stays in any
        other field."""
        if said is None:
            return u
        old, new = (strip_honorifics(_trim_en(said.group(k)).strip("「」")) for k in ("old", "new"))
        if not old or not new or is_polite_only(new):
            return u
        for name in VISIT_FIELDS:
            if strip_honorifics(getattr(u, name)) in (old, new):
                setattr(u, name, "")
        honorific = re.search(rf"{_JA_HONORIFIC}$|^{_EN_TITLE}", said.group("old").strip(), re.I)
        if honorific or find_in_text(old, self._directory()):
            u.host_name = _title(new) if new.isascii() else new
        elif re.search(rf"^{_JA_COMPANY_PREFIX}|{_JA_COMPANY_SUFFIX}$", old):
            u.company_name = new
        elif parse_time(old) and (time := parse_time(new)):
            u.purpose = appointment_at(*time, language)
        elif find_in_text(new, self._directory()):
            u.host_name = _title(new) if new.isascii() else new
        else:
            u.visitor_name = _title(new) if new.isascii() else new
        u.is_correction = True
        return u

    @staticmethod
    def _en_purpose(text: str) -> str:
        """About what, else an appointment at a time ("appointment at 14:00"), else the meeting or the wish."""
        about = _EN_PURPOSE.search(text)
        if about and re.match(_EN_TITLE, about.group(1), re.I):
            about = None
        timed = appointment_purpose(text, "en")
        if timed and not (about and not APPOINTMENT_STATEMENT.search(about.group(1))):
            return timed
        if about:
            return re.sub(r"^(?:the|a|an|our|my)\s+", "", _trim_en(about.group(1)), flags=re.I)
        if noun := _EN_PURPOSE_NOUN.search(text):
            return noun.group(2)
        if wish := _EN_WISH.search(text):
            return _trim_en(wish.group(1))
        return ""

    def _en_host(self, text: str, visitor_name: str) -> str:
        for match in _EN_HOST.finditer(text):
            candidate = _trim_en(match.group(1))
            titled = re.match(_EN_TITLE, candidate, re.I)
            if titled or find_in_text(candidate, self._directory()) or candidate[:1].isupper():
                name = strip_honorifics(candidate)
                if name and name.lower() not in {"appointment", "meeting", "delivery"}:
                    return name
        for person in find_in_text(text, self._directory()):
            for token in (person.romaji or "").split():
                if re.search(rf"\b{re.escape(token)}\b", text, re.I) and token.lower() not in visitor_name.lower():
                    return token
        return ""
