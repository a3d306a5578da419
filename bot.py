"""学信网账号助手 — the one entry point. Wiring only: every subcommand hands off to its module.

    python bot.py                 sandbox + web chat on embedded defaults, prints the URL
    python bot.py serve           web chat (HTTP API, widget, Telegram webhook) alone
    python bot.py sandbox         the account API sandbox service
    python bot.py telegram        Telegram bot by polling (token from TELEGRAM_BOT_TOKEN)
    python bot.py chat            chat in the terminal
    python bot.py ask "问题"       print the reply a user would get
    python bot.py match "问题"     print the matcher's decision as JSON (--jsonl: JSON lines on stdin)
    python bot.py eval FILE.yaml  accuracy and latency on a labelled question file (--json)
    python bot.py unanswered      clusters of unanswered questions from the turn events (--since 7d, --json)
    python bot.py check           validate faq/ (non-zero exit on problems), list near duplicates
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bot.py", description="学信网账号助手")
    p.add_argument("--config", help="path to config.yaml (default: ./config.yaml or $CHSI_BOT_CONFIG)")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("demo", help="sandbox + web chat (the default)")
    serve = sub.add_parser("serve", help="web chat alone, against the configured account API")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default: the number of cores); with Redis sessions WEB_SESSION_SECRET is required")
    sub.add_parser("sandbox", help="the account API sandbox")
    sub.add_parser("telegram", help="Telegram bot by polling")
    sub.add_parser("chat", help="chat in the terminal")
    ask = sub.add_parser("ask", help="print the reply to one question")
    ask.add_argument("text")
    match = sub.add_parser("match", help="the matcher's decision as JSON")
    match.add_argument("text", nargs="?")
    match.add_argument("--jsonl", action="store_true", help='read {"text": ...} lines on stdin')
    ev = sub.add_parser("eval", help="evaluate on a labelled YAML file")
    ev.add_argument("file")
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    un = sub.add_parser("unanswered", help="clusters of questions the bot could not answer")
    un.add_argument("--since", default="7d", help="how far back: 30m, 12h, 7d, 2w (default 7d)")
    un.add_argument("--json", action="store_true", help="machine-readable output")
    un.add_argument("--limit", type=int, default=None, help="at most this many clusters")
    chk = sub.add_parser("check", help="validate the FAQ YAML, list near-duplicate questions")
    chk.add_argument("--strict", action="store_true", help="exit non-zero on near duplicates too")
    from handlers import staff_cli
    staff_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import settings

    try:
        cfg = settings.load(args.config)
    except settings.ConfigError as e:
        print(f"配置有误：{e}", file=sys.stderr)
        return 2
    command = args.command or "demo"
    if command == "check":
        from faq import check
        return check.run(cfg, args)
    if command in ("match", "eval", "unanswered"):
        from intents import cli
        return getattr(cli, command)(cfg, args)
    if command == "staff":
        from handlers import staff_cli
        return staff_cli.run(cfg, args)
    if command == "ask":
        from channels import console
        return console.ask(cfg, args.text)
    if command == "chat":
        from channels import console
        return console.run(cfg)
    if command == "sandbox":
        from accounts.sandbox import server
        return server.run(cfg)
    if command == "telegram":
        from channels import telegram
        return telegram.run_polling(cfg)
    from channels import launcher
    if command == "serve":
        workers = args.workers if args.workers is not None else launcher.default_workers()
        if workers > 1:
            return launcher.serve_workers(cfg, workers, args.config)
    return launcher.serve(cfg, with_sandbox=(command == "demo"))


if __name__ == "__main__":
    import settings

    try:
        sys.exit(main())
    except settings.ConfigError as e:  # a setting found unworkable when its part starts: one line too
        print(f"配置有误：{e}", file=sys.stderr)
        sys.exit(2)
