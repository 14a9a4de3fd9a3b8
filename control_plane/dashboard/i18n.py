"""The dashboard's words in English and Korean, and which of the two a request gets.

Hand-written rather than gettext/Babel: two languages and some eighty short strings, kept beside
the templates with no catalogue to compile; a missing Korean string falls back to the English one,
and a test checks that none is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

LANGS = ("en", "ko")
LANG_COOKIE = "drctl_lang"

TEXT: Mapping[str, tuple[str, str]] = {
    # key: (English, Korean)
    "title": ("drctl status", "drctl 상태"),
    "skip": ("Skip to the sites", "사이트로 건너뛰기"),
    "signed_in_as": ("Signed in as", "로그인:"),
    "logout": ("Log out", "로그아웃"),
    "language": ("Language", "언어"),
    "login": ("Log in", "로그인"),
    "login_title": ("Log in to drctl", "drctl 로그인"),
    "token": ("API token", "API 토큰"),
    "token_help": (
        "A token from drctl token create (viewer or operator). It is not kept in the browser.",
        "drctl token create 로 만든 토큰(viewer 또는 operator). 브라우저에 저장되지 않습니다.",
    ),
    "bad_token": ("That token is not valid.", "유효하지 않은 토큰입니다."),
    "live": ("Live", "실시간"),
    "lost": ("Connection lost: showing data from", "연결 끊김: 다음 시각의 데이터 표시 중"),
    "updated": ("Updated", "갱신"),
    "sites": ("Sites", "사이트"),
    "site": ("Site", "사이트"),
    "health": ("Health", "상태"),
    "accepting": ("Accepting", "주문 수신"),
    "yes": ("yes", "예"),
    "no": ("no", "아니오"),
    "breaker": ("Breaker", "차단기"),
    "held_open": ("held open", "강제 개방"),
    "load": ("Load this hour", "이번 시간 부하"),
    "backlog": ("Backlog", "적체"),
    "tier": ("Tier", "등급"),
    "rto": ("RTO target / last measured", "RTO 목표 / 최근 측정"),
    "not_measured": ("not measured", "측정 없음"),
    "actions": ("Actions", "조치"),
    "failover": ("Fail over", "페일오버"),
    "failback": ("Fail back", "페일백"),
    "reset_breaker": ("Reset breaker", "차단기 초기화"),
    "integrations": ("Integrations", "연동"),
    "integration": ("Integration", "연동"),
    "fallback": ("Fallback", "대체 수단"),
    "impairs": ("Impairs", "영향 사이트"),
    "none": ("none", "없음"),
    "incidents": ("Open incidents", "진행 중인 장애"),
    "no_incidents": ("No open incident.", "진행 중인 장애가 없습니다."),
    "held_orders": ("Held orders", "보류 주문"),
    "no_held": ("No order is held.", "보류된 주문이 없습니다."),
    "held_since": ("held since", "보류 시작"),
    "attempts": ("attempts", "시도"),
    "notices": ("Delay notices", "지연 안내"),
    "sent": ("sent", "발송"),
    "pending": ("pending", "대기"),
    "failed": ("failed", "실패"),
    "alerts": ("Firing alerts", "발생 중인 알림"),
    "no_alerts": ("No alert is firing.", "발생 중인 알림이 없습니다."),
    "silence": ("Silence", "무음"),
    "silence_for": ("for", "기간"),
    "silenced": ("silenced", "무음 처리됨"),
    "drills": ("Recent drills", "최근 훈련"),
    "no_drills": ("No drill has run yet.", "아직 실행된 훈련이 없습니다."),
    "intake": ("Last hour", "최근 1시간"),
    "orders_per_min": ("Orders / min", "분당 주문"),
    "reroutes_per_min": ("Reroutes / min", "분당 재라우팅"),
    "plan_title": ("Fail over {site}: the plan", "{site} 페일오버: 계획"),
    "failback_title": ("Fail back {site}: the checks", "{site} 페일백: 점검"),
    "plan_intro": (
        "Nothing has happened yet. This is what the failover would do now.",
        "아직 아무것도 실행되지 않았습니다. 지금 페일오버하면 다음과 같이 됩니다.",
    ),
    "failback_intro": (
        "Nothing has happened yet. These are the checks a failback must pass now.",
        "아직 아무것도 실행되지 않았습니다. 지금 페일백에 필요한 점검입니다.",
    ),
    "orders_to_move": ("Orders to move", "이동할 주문"),
    "per_target": ("Orders per target", "대상별 주문"),
    "late_orders": ("Late orders", "지연 주문"),
    "notices_out": ("Notices that would go out", "발송될 안내"),
    "unplaceable": ("Would be held (no site can take them)", "보류 예정(수용 가능한 사이트 없음)"),
    "rules": ("Safety rules", "안전 규칙"),
    "rule": ("Rule", "규칙"),
    "passes": ("passes", "통과"),
    "warns": ("warns", "경고"),
    "options": ("Options, priced with the latest BIA", "선택지 (최신 BIA 기준 비용)"),
    "option": ("Option", "선택지"),
    "targets": ("Targets", "대상"),
    "at_risk_per_hour": ("Orders at risk / h", "위험 주문 / 시간"),
    "revenue_at_risk_per_hour": ("Revenue at risk / h", "위험 매출 / 시간"),
    "extra_transit": ("Extra transit (h)", "추가 운송 시간(h)"),
    "extra_cost_per_hour": ("Extra cost / h", "추가 비용 / 시간"),
    "cost_first_hour": ("Cost, first hour", "첫 1시간 비용"),
    "recommended": ("Recommended", "권장"),
    "breaks": ("breaks", "위반"),
    "refuses": ("refuses", "거부"),
    "numbers": ("Numbers", "수치"),
    "health_now": ("Health now", "현재 상태"),
    "cancel_pending": ("Cancels still owed at the site", "사이트에 남은 취소 요청"),
    "reason": ("Reason (kept in the audit log)", "사유(감사 기록에 남음)"),
    "confirm_code": ("Type the site code {site} to confirm", "확인을 위해 사이트 코드 {site}를 입력하세요"),
    "force": ("Override the refusing rules (audited)", "거부한 규칙 무시(감사 기록됨)"),
    "ramp": ("Ramp up over (seconds)", "램프 업 시간(초)"),
    "do_failover": ("Fail over {site} now", "지금 {site} 페일오버"),
    "do_failback": ("Fail back {site} now", "지금 {site} 페일백"),
    "cancel": ("Back to the status page", "상태 화면으로"),
    "code_mismatch": (
        "The code typed is not {site}: nothing was done.",
        "입력한 코드가 {site}가 아닙니다: 아무것도 실행되지 않았습니다.",
    ),
    "refused": ("Refused: {detail}", "거부됨: {detail}"),
    "done_failover": (
        "{site} failed over: {moved} orders moved.",
        "{site} 페일오버 완료: 주문 {moved}건 이동.",
    ),
    "done_failback": ("{site} is taking orders again.", "{site}가 다시 주문을 받습니다."),
    "done_reset": ("Breaker {name} reset: {state}.", "차단기 {name} 초기화: {state}."),
    "done_silence": ("{alert} silenced until {until}.", "{alert} 무음: {until}까지."),
    "viewer_note": (
        "You are a viewer: actions need an operator token.",
        "조회 권한입니다: 조치에는 operator 토큰이 필요합니다.",
    ),
    "healthy": ("healthy", "정상"),
    "degraded": ("degraded", "저하"),
    "down": ("down", "중단"),
    "unknown": ("unknown", "알 수 없음"),
    "closed": ("closed", "닫힘"),
    "open": ("open", "열림"),
    "half-open": ("half-open", "반열림"),
}


def negotiate(accept_language: str | None, chosen: str | None) -> str:
    """The language chosen with the switch, else the best of Accept-Language, else English."""
    if chosen in LANGS:
        return str(chosen)
    best, best_q = "en", 0.0
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str) -> Callable[..., str]:
    index = LANGS.index(lang) if lang in LANGS else 0

    def t(key: str, **values: object) -> str:
        pair = TEXT.get(key)
        text = key if pair is None else (pair[index] or pair[0])
        return text.format(**values) if values else text

    return t
