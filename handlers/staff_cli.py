"""``python bot.py staff …``: manage staff accounts in the configured database.

    python bot.py staff add NAME --role agent|admin   password read from the terminal (twice) or stdin
    python bot.py staff passwd NAME                   a new password, the same way
    python bot.py staff list
    python bot.py staff disable NAME

Passwords are never taken from the command line (they would land in shell history and ``ps``).
"""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, Mapping, TextIO

from .db import database_url, shared
from .staff import ROLES, StaffError, StaffStore


def add_parser(sub: Any) -> None:
    """The ``staff`` subcommand and its actions."""
    p = sub.add_parser("staff", help="staff accounts for the console (add, passwd, list, disable)")
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account (password from the terminal or stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="agent")
    passwd = actions.add_parser("passwd", help="set a new password (signs the account out everywhere)")
    passwd.add_argument("name")
    actions.add_parser("list", help="list accounts")
    disable = actions.add_parser("disable", help="disable an account (signs it out everywhere)")
    disable.add_argument("name")


def read_password(stdin: TextIO = sys.stdin, prompt: Any = getpass.getpass) -> str:
    """From the terminal (asked twice) or one line of stdin."""
    if stdin.isatty():
        first = prompt("密码：")
        if prompt("再次输入密码：") != first:
            raise StaffError("两次输入的密码不一致。")
        return first
    return stdin.readline().rstrip("\r\n")


def run(cfg: Mapping[str, Any], args: argparse.Namespace, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """One ``staff`` action; exit status 0 on success, 1 with a Chinese message otherwise."""
    try:
        store = StaffStore(shared(database_url(cfg)))
        if args.action == "add":
            staff = store.add(args.name, args.role, read_password(stdin))
            print(f"已创建客服账号 {staff.name}（{staff.role}）。运行 python bot.py 后在 /staff 登录。", file=out)
        elif args.action == "passwd":
            store.set_password(args.name, read_password(stdin))
            print(f"已更新 {args.name} 的密码，原有登录已失效。", file=out)
        elif args.action == "disable":
            store.disable(args.name)
            print(f"已停用客服账号 {args.name}，其登录已失效。", file=out)
        else:
            rows = store.list()
            if not rows:
                print("还没有客服账号。创建：python bot.py staff add 用户名 --role agent", file=out)
            for s in rows:
                print(f"{s.name}\t{s.role}\t{'已停用' if s.disabled else '启用'}", file=out)
    except StaffError as e:
        print(e.message, file=sys.stderr)
        return 1
    return 0
