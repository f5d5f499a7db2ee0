#!/usr/bin/env python3
"""Writes a realistic mail-system syslog corpus, one RFC 3164 line per
message as rsyslog forwards it (`<PRI>Mmm dd HH:MM:SS host app[pid]: msg`):
postfix (smtpd, cleanup, qmgr, smtp, lmtp), amavis, slapd, nginx access
lines, Carbonio audit lines, sshd and cron, in the proportions of a busy
Carbonio MTA + mailstore pair. Deterministic for a given seed.

usage: gen_mail_corpus.py OUT [--lines N] [--start EPOCH] [--seed S]
Timestamps are UTC, one second apart every ~(span / N), starting at --start
(default: 24 hours ago, on the hour), so they fall in the past day.
"""

import argparse
import random
import time

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "gmail.com",
           "outlook.com", "libero.it", "zextras.com", "uni.example.edu"]
FIRST = ["mario", "luca", "giulia", "anna", "paolo", "sara", "marco", "elena",
         "admin", "noreply", "info", "support", "billing", "hr", "sales"]


def user(r):
    return f"{r.choice(FIRST)}.{r.randrange(1000)}@{r.choice(DOMAINS)}"


def ip(r):
    return f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def qid(r):
    return "%010X" % r.getrandbits(40)


def postfix_smtpd(r, t):
    kind = r.random()
    client = f"unknown[{ip(r)}]" if r.random() < 0.4 else f"mx{r.randrange(9)}.{r.choice(DOMAINS)}[{ip(r)}]"
    if kind < 0.35:
        return "postfix/smtpd", 22, f"connect from {client}"
    if kind < 0.7:
        return "postfix/smtpd", 22, f"disconnect from {client} ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
    if kind < 0.85:
        return "postfix/smtpd", 22, f"{qid(r)}: client={client}"
    return "postfix/smtpd", 20, (f"NOQUEUE: reject: RCPT from {client}: 554 5.7.1 <{user(r)}>: "
                                 f"Relay access denied; from=<{user(r)}> to=<{user(r)}> proto=ESMTP helo=<{r.choice(DOMAINS)}>")


def postfix_queue(r, t):
    q = qid(r)
    kind = r.random()
    if kind < 0.3:
        return "postfix/cleanup", 22, f"{q}: message-id=<{r.getrandbits(64):016x}@{r.choice(DOMAINS)}>"
    if kind < 0.6:
        return "postfix/qmgr", 22, f"{q}: from=<{user(r)}>, size={r.randrange(800, 4_000_000)}, nrcpt={r.randrange(1, 4)} (queue active)"
    if kind < 0.9:
        return "postfix/qmgr", 22, f"{q}: removed"
    return "postfix/bounce", 22, f"{q}: sender non-delivery notification: {qid(r)}"


def postfix_delivery(r, t):
    q = qid(r)
    delay = r.random() * 3
    if r.random() < 0.6:
        return "postfix/lmtp", 22, (f"{q}: to=<{user(r)}>, relay=mbox{r.randrange(1, 4)}.example.com[10.0.1.{r.randrange(10, 20)}]:7025, "
                                    f"delay={delay:.2f}, delays=0.1/0/0.01/{delay:.2f}, dsn=2.1.5, status=sent (250 2.1.5 Delivery OK)")
    status = r.random()
    if status < 0.85:
        tail = f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {qid(r)})"
    elif status < 0.95:
        tail = "dsn=4.7.0, status=deferred (host refused to talk to me: 421 4.7.0 Try again later)"
    else:
        tail = f"dsn=5.1.1, status=bounced (host said: 550 5.1.1 <{user(r)}>: Recipient address rejected: User unknown)"
    return "postfix/smtp", 22, (f"{q}: to=<{user(r)}>, relay=mx{r.randrange(9)}.{r.choice(DOMAINS)}[{ip(r)}]:25, "
                                f"delay={delay:.1f}, delays=0.02/0/0.3/{delay:.1f}, {tail}")


def amavis(r, t):
    verdict = "Passed CLEAN" if r.random() < 0.9 else "Blocked SPAM"
    return "amavis", 22, (f"({r.randrange(10000, 99999)}-{r.randrange(1, 20):02d}) {verdict} {{RelayedInbound}}, [{ip(r)}]:{r.randrange(1024, 65535)} "
                          f"[{ip(r)}] <{user(r)}> -> <{user(r)}>, Queue-ID: {qid(r)}, Message-ID: <{r.getrandbits(48):012x}@{r.choice(DOMAINS)}>, "
                          f"mail_id: {r.getrandbits(60):015x}, Hits: {r.uniform(-5, 12):.3f}, size: {r.randrange(900, 90000)}, {r.randrange(80, 3000)} ms")


def slapd(r, t):
    conn, op = r.randrange(1000, 99999), r.randrange(0, 50)
    kind = r.random()
    if kind < 0.5:
        return "slapd", 166, (f"conn={conn} op={op} SRCH base=\"ou=people,dc=example,dc=com\" scope=2 deref=0 "
                              f"filter=\"(&(objectClass=zimbraAccount)(zimbraMailDeliveryAddress={user(r)}))\"")
    if kind < 0.9:
        return "slapd", 166, f"conn={conn} op={op} SEARCH RESULT tag=101 err=0 qtime=0.000012 etime=0.000{r.randrange(100, 999)} nentries=1 text="
    return "slapd", 166, f"conn={conn} op={op} BIND dn=\"uid=zmpostfix,cn=appaccts,cn=zimbra\" method=128"


def nginx(r, t):
    path = r.choice(["/service/soap/SearchRequest", "/service/soap/GetInfoRequest", "/carbonio/",
                     "/service/home/~/?auth=co&view=html", "/static/login/", "/service/upload?fmt=raw"])
    status = r.choices([200, 304, 401, 404, 502], [85, 8, 3, 3, 1])[0]
    return "nginx", 166, (f"{ip(r)}:{r.randrange(1024, 65535)} - - [{time.strftime('%d/%b/%Y:%H:%M:%S +0000', t)}]  "
                          f"\"GET https://mail.example.com{path} HTTP/1.1\" {status} {r.randrange(200, 90000)} \"-\" "
                          f"\"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\" \"10.0.1.{r.randrange(10, 20)}:8080\" \"10.0.0.2:443\"")


def audit(r, t):
    account = user(r)
    if r.random() < 0.85:
        return "audit", 134, (f"INFO  [qtp{r.randrange(100, 999)}-{r.randrange(10, 99)}:https://mail.example.com/service/soap/AuthRequest] "
                              f"[name={account};oip={ip(r)};ua=CarbonioWebClient - FF128 (Linux);] security - cmd=Auth; account={account}; protocol=soap;")
    return "audit", 132, (f"WARN  [ImapSSLServer-{r.randrange(1, 99)}] [ip={ip(r)};] security - cmd=Auth; account={account}; protocol=imap; "
                          f"error=authentication failed for [{account}], invalid password;")


def sshd(r, t):
    if r.random() < 0.7:
        return "sshd", 38, f"Failed password for invalid user {r.choice(FIRST)} from {ip(r)} port {r.randrange(1024, 65535)} ssh2"
    return "sshd", 38, f"Accepted publickey for zextras from 10.0.9.{r.randrange(2, 20)} port {r.randrange(1024, 65535)} ssh2: ED25519 SHA256:{r.getrandbits(128):032x}"


def cron(r, t):
    return "CRON", 78, r.choice([
        "(zextras) CMD (/opt/zextras/libexec/zmstatuptime >> /dev/null 2>&1)",
        "(zextras) CMD (/opt/zextras/libexec/zmcheckexpiredcerts -days 30 -email)",
        "(root) CMD (test -x /etc/cron.daily/popularity-contest && /etc/cron.daily/popularity-contest --crond)",
        "pam_unix(cron:session): session opened for user zextras(uid=998) by (uid=0)",
    ])


# (generator, weight, hosts)
SOURCES = [
    (postfix_smtpd, 22, ["mta1.example.com", "mta2.example.com"]),
    (postfix_queue, 20, ["mta1.example.com", "mta2.example.com"]),
    (postfix_delivery, 18, ["mta1.example.com", "mta2.example.com"]),
    (amavis, 10, ["mta1.example.com", "mta2.example.com"]),
    (slapd, 12, ["ldap1.example.com"]),
    (nginx, 10, ["proxy1.example.com"]),
    (audit, 4, ["mbox1.example.com", "mbox2.example.com", "mbox3.example.com"]),
    (sshd, 2, ["mta1.example.com", "proxy1.example.com", "mbox1.example.com"]),
    (cron, 2, ["mta1.example.com", "mbox1.example.com", "ldap1.example.com"]),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--lines", type=int, default=10_000_000)
    p.add_argument("--start", type=int, default=(int(time.time()) // 3600 - 24) * 3600)
    p.add_argument("--span-hours", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    r = random.Random(a.seed)
    gens = [s[0] for s in SOURCES]
    weights = [s[1] for s in SOURCES]
    hosts = [s[2] for s in SOURCES]
    pids = {}
    step = a.span_hours * 3600 / a.lines
    with open(a.out, "w", buffering=1 << 20) as out:
        batch = []
        for i in range(a.lines):
            k = r.choices(range(len(gens)), weights)[0]
            t = time.gmtime(a.start + int(i * step))
            app, pri, msg = gens[k](r, t)
            host = r.choice(hosts[k])
            pid = pids.setdefault((host, app), r.randrange(300, 60000))
            if r.random() < 0.001:
                pids[(host, app)] = r.randrange(300, 60000)
            stamp = f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            tag = f"{app}[{pid}]" if app not in ("nginx",) else app
            batch.append(f"<{pri}>{stamp} {host.split('.')[0]} {tag}: {msg}\n")
            if len(batch) == 10000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))


if __name__ == "__main__":
    main()
