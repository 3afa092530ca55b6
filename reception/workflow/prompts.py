"""Every sentence the receptionist says, in Japanese (polite) and English, in one place."""

from __future__ import annotations

_PROMPTS: dict[str, dict[str, str]] = {
    "greeting": {
        "ja": "いらっしゃいませ。ご来社ありがとうございます。会社名、お名前、ご用件をお聞かせください。",
        "en": "Welcome. Thank you for visiting us. "
        "Please tell me your company, your name and the purpose of your visit.",
    },
    "ask_missing": {
        "ja": "ありがとうございます。恐れ入りますが、{fields}をお聞かせいただけますか。",
        "en": "Thank you. Could you tell me {fields}, please?",
    },
    "ask_unclear": {
        "ja": "申し訳ございません、うまく聞き取れませんでした。{fields}をもう一度お聞かせいただけますか。",
        "en": "I'm sorry, I didn't catch that. Could you tell me {fields} again, please?",
    },
    "confirm": {
        "ja": "確認いたします。{company}の{name}様、{host}ご用件は「{purpose}」でよろしいでしょうか。"
        "「はい」か「いいえ」でお答えください。",
        "en": "Let me confirm: {name} from {company}, {host}for {purpose}. Is that correct? Please answer yes or no.",
    },
    "confirm_host": {"ja": "{host}へのご訪問で、", "en": "visiting {host}, "},
    "confirm_unclear": {
        "ja": "恐れ入ります。内容にお間違いがなければ「はい」、訂正がある場合は「いいえ」とお答えください。",
        "en": "Sorry, please answer yes if the details are correct, or no if something needs to be changed.",
    },
    "ask_correction": {
        "ja": "失礼いたしました。正しい内容をお聞かせください。",
        "en": "I'm sorry about that. Please tell me the correct details.",
    },
    "ask_host_choice": {
        "ja": "{host}という者は複数おります。{departments}のうち、どちらの部署の{host}でしょうか。",
        "en": "We have more than one {host}: in {departments}. Which department is the person you are visiting in?",
    },
    "host_notified_appointment": {
        "ja": "{name}様、お待ちしておりました。{host}にご到着をお知らせしました。{room}{place}にて少々お待ちください。",
        "en": "Thank you, {name}, we were expecting you. I have let {host} know you are here. {room}"
        "Please wait {place}.",
    },
    "room": {"ja": "お打ち合わせ場所は{location}です。", "en": "Your meeting is in {location}. "},
    "host_notified_no_appointment": {
        "ja": "{name}様、{host}にお越しいただいたことをお伝えしました。本日のお約束は確認できませんでしたので、"
        "{host}からの返事があるまで{place}にて少々お待ちください。",
        "en": "Thank you, {name}. I could not find an appointment for today, but I have let {host} know you are here. "
        "Please wait {place} for a reply.",
    },
    "host_unreachable": {
        "ja": "申し訳ございません、{host}に連絡がつきませんでした。"
        "受付の者がご案内いたしますので、{place}にて少々お待ちください。",
        "en": "I'm sorry, I could not reach {host}. The reception staff will help you; please wait {place}.",
    },
    "nobody_reachable": {
        "ja": "申し訳ございません、ただいま担当者にも受付にも連絡がつきませんでした。"
        "お手数ですが、受付カウンターのスタッフにお声がけください。",
        "en": "I'm sorry, I could not reach anyone just now. Please speak to the staff at the reception desk, "
        "who will help you.",
    },
    "desk_unknown_host": {
        "ja": "申し訳ございません、{host}という者が見つかりませんでした。"
        "受付の者に連絡しましたので、{place}にて少々お待ちください。",
        "en": "I'm sorry, I could not find {host} in our directory. I have called the reception staff; "
        "please wait {place}.",
    },
    "desk_absent": {
        "ja": "申し訳ございません、{host}は本日不在にしております。"
        "受付の者に連絡しましたので、{place}にて少々お待ちください。",
        "en": "I'm sorry, {host} is not in the office today. I have called the reception staff; please wait {place}.",
    },
    "desk_general": {
        "ja": "受付の者に連絡しましたので、{place}にて少々お待ちください。係の者がご案内いたします。",
        "en": "I have called the reception staff, who will help you. Please wait {place}.",
    },
    "decline_sales": {
        "ja": "申し訳ございません。お約束のない営業のご訪問はお受けしておりません。"
        "よろしければ、名刺や資料を受付にお預けください。担当部署へお渡しいたします。",
        "en": "I'm sorry, we do not accept sales visits without an appointment. You are welcome to leave your business "
        "card or materials at the reception desk, and we will pass them on.",
    },
    "delivery": {
        "ja": "お届けありがとうございます。お荷物は受付カウンターにお置きください。受付の者に連絡いたしました。",
        "en": "Thank you for the delivery. Please leave the package at the reception desk; I have let the staff know.",
    },
    "delivery_signature": {
        "ja": "お届けありがとうございます。受領のサインが必要とのことですので、"
        "受付の呼び出しベルを鳴らしてお待ちください。"
        "受付の者にも連絡いたしました。",
        "en": "Thank you for the delivery. As a signature is needed, please ring the bell at the reception desk; "
        "I have also let the staff know.",
    },
    "appointment_at": {"ja": "{time}のお約束", "en": "appointment at {time}"},
    "delivery_purpose": {"ja": "お届け物", "en": "delivery"},
    "delivery_purpose_signature": {"ja": "お届け物（受領サインが必要）", "en": "delivery (signature needed)"},
    "finished": {
        "ja": "受付は完了しております。",
        "en": "Your reception is complete.",
    },
    "default_place": {"ja": "ロビー", "en": "in the lobby"},
}

_FIELD_LABELS: dict[str, dict[str, str]] = {
    "company_name": {"ja": "会社名", "en": "your company name"},
    "visitor_name": {"ja": "お名前", "en": "your name"},
    "purpose": {"ja": "ご用件", "en": "the purpose of your visit"},
    "host_name": {"ja": "訪問先の担当者名", "en": "the name of the person you are visiting"},
}


def say(key: str, language: str, **values: str) -> str:
    """The sentence `key` in `language` (English unless "ja"), with `values` filled in."""
    table = _PROMPTS[key]
    return table["ja" if language == "ja" else "en"].format(**values)


def templates(language: str) -> list[str]:
    """Every sentence template in `language` (English unless "ja"), placeholders unfilled."""
    return [table["ja" if language == "ja" else "en"] for table in _PROMPTS.values()]


def field_list(fields: list[str], language: str) -> str:
    """The fields named in a sentence: 会社名、お名前 / your company name and your name."""
    labels = [_FIELD_LABELS[f]["ja" if language == "ja" else "en"] for f in fields]
    if language == "ja":
        return "、".join(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def place(location: str, language: str) -> str:
    """Where the visitor waits: the kiosk's location, or the lobby."""
    if not location:
        return say("default_place", language)
    return location if language == "ja" else f"at {location}"
