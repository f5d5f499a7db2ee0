#!/usr/bin/env python3
"""Writes a realistic mail-system syslog corpus, one RFC 3164 line per
message as rsyslog forwards it (`<PRI>Mmm dd HH:MM:SS host app[pid]: msg`),
for a Carbonio MTA pair, three mailstores, a proxy and an LDAP server.

What makes it realistic rather than random text:
- mail flows as Postfix logs it: each message is a transaction whose lines
  share a queue id, sender, recipients and message-id (smtpd connect and
  client=, cleanup, qmgr from=, amavis verdict, lmtp/smtp delivery with
  sent/deferred/bounced status, qmgr removed, disconnect), many in flight
  and interleaved;
- senders, recipients, client IPs and user agents come from fixed pools
  with skewed (Zipf-like) popularity, as on a real server;
- slapd connections are numbered in sequence and carry several operations;
- nginx access lines (Carbonio's upstream format), Carbonio audit log
  lines (logins and failures), sshd brute force from a few addresses, cron.

usage: gen_mail_corpus.py OUT [--lines N] [--start EPOCH] [--span-hours H] [--seed S]
Timestamps are UTC and spread evenly over --span-hours from --start
(default: 24 hours ago, on the hour). Deterministic for a given seed.
"""

import argparse
import random
import time

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
LOCAL_DOMAINS = ["example.com", "mail.example.org"]
REMOTE_DOMAINS = ["gmail.com", "outlook.com", "libero.it", "zextras.com", "uni.example.edu",
                  "corp.example.net", "yahoo.com", "aruba.it", "pec.it", "icloud.com"]
FIRST = ["mario", "luca", "giulia", "anna", "paolo", "sara", "marco", "elena", "giorgio",
         "chiara", "andrea", "francesca", "matteo", "valentina", "davide", "laura"]
PATHS = ["/service/soap/SearchRequest", "/service/soap/GetInfoRequest", "/carbonio/",
         "/service/soap/SendMsgRequest", "/service/home/~/?auth=co&view=html",
         "/static/login/", "/service/upload?fmt=raw", "/service/soap/NoOpRequest",
         "/service/soap/GetMsgRequest", "/zx/auth/v2/login"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
          "Carbonio/1.4 (Android 14)", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)"]


class Pools:
    """Fixed populations with skewed popularity."""

    def __init__(self, r):
        self.r = r
        self.locals = [f"{r.choice(FIRST)}.{r.randrange(1000)}@{r.choice(LOCAL_DOMAINS)}" for _ in range(3000)]
        self.remotes = [f"{r.choice(FIRST)}{r.randrange(100)}@{r.choice(REMOTE_DOMAINS)}" for _ in range(20000)]
        self.client_ips = [self.ip() for _ in range(5000)]
        self.mx = [(f"mx{r.randrange(1, 9)}.{d}", self.ip()) for d in REMOTE_DOMAINS for _ in range(3)]
        self.attackers = [self.ip() for _ in range(40)]
        self.web_ips = [self.ip() for _ in range(4000)]

    def ip(self):
        r = self.r
        return f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def pick(self, pool):
        # Zipf-like: low indexes are far more popular.
        i = int(len(pool) * (self.r.random() ** 3))
        return pool[i]


class Flow:
    """One message through Postfix and amavis: its lines in order."""

    def __init__(self, r, p, host):
        self.host = host
        inbound = r.random() < 0.6
        qid = "%010X" % r.getrandbits(40)
        queued = "%010X" % r.getrandbits(40)
        sender = p.pick(p.remotes) if inbound else p.pick(p.locals)
        rcpts = [p.pick(p.locals) if inbound else p.pick(p.remotes) for _ in range(1 if r.random() < 0.85 else r.randrange(2, 5))]
        client_ip = p.pick(p.client_ips) if inbound else f"10.0.1.{r.randrange(10, 13)}"
        client = f"unknown[{client_ip}]" if inbound and r.random() < 0.3 else \
            (f"{p.pick(p.mx)[0]}[{client_ip}]" if inbound else f"mbox{r.randrange(1, 4)}.example.com[{client_ip}]")
        msgid = f"{r.getrandbits(48):012x}.{r.randrange(1000)}@{sender.split('@')[1]}"
        size = int(r.lognormvariate(9.5, 1.3))
        lines = [("postfix/smtpd", 22, f"connect from {client}")]
        if inbound and r.random() < 0.12:
            lines.append(("postfix/smtpd", 20, f"NOQUEUE: reject: RCPT from {client}: 554 5.7.1 <{rcpts[0]}>: Relay access denied; "
                                               f"from=<{sender}> to=<{rcpts[0]}> proto=ESMTP helo=<{client.split('[')[0]}>"))
            lines.append(("postfix/smtpd", 22, f"disconnect from {client} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"))
            self.lines = lines
            return
        lines += [
            ("postfix/smtpd", 22, f"{qid}: client={client}"),
            ("postfix/cleanup", 22, f"{qid}: message-id=<{msgid}>"),
            ("postfix/qmgr", 22, f"{qid}: from=<{sender}>, size={size}, nrcpt={len(rcpts)} (queue active)"),
            ("postfix/smtpd", 22, f"disconnect from {client} ehlo=1 mail=1 rcpt={len(rcpts)} data=1 quit=1 commands={4 + len(rcpts)}"),
        ]
        spam = inbound and r.random() < 0.08
        hits = r.uniform(6, 20) if spam else r.uniform(-3, 4)
        verdict = "Blocked SPAM" if spam else "Passed CLEAN"
        lines.append(("amavis", 22, f"({r.randrange(10000, 99999)}-{r.randrange(1, 20):02d}) {verdict} {{RelayedInbound}}, "
                                    f"[{client_ip}]:{r.randrange(1024, 65535)} <{sender}> -> {','.join(f'<{x}>' for x in rcpts)}, "
                                    f"Queue-ID: {qid}, Message-ID: <{msgid}>, mail_id: {r.getrandbits(60):015x}, Hits: {hits:.3f}, "
                                    f"size: {size}, queued_as: {queued}, {r.randrange(80, 1500)} ms"))
        if not spam:
            for rc in rcpts:
                delay = r.expovariate(1.5)
                if inbound:
                    lines.append(("postfix/lmtp", 22, f"{qid}: to=<{rc}>, relay=mbox{r.randrange(1, 4)}.example.com[10.0.1.{r.randrange(10, 13)}]:7025, "
                                                      f"delay={delay:.2f}, delays=0.05/0/0.01/{delay:.2f}, dsn=2.1.5, status=sent (250 2.1.5 Delivery OK)"))
                    continue
                mx, mx_ip = p.pick(p.mx)
                s = r.random()
                if s < 0.9:
                    tail = f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {r.getrandbits(40):010X})"
                elif s < 0.97:
                    tail = "dsn=4.7.0, status=deferred (host refused to talk to me: 421 4.7.0 Try again later)"
                else:
                    tail = f"dsn=5.1.1, status=bounced (host {mx}[{mx_ip}] said: 550 5.1.1 <{rc}>: Recipient address rejected: User unknown)"
                lines.append(("postfix/smtp", 22, f"{qid}: to=<{rc}>, relay={mx}[{mx_ip}]:25, delay={delay:.1f}, "
                                                  f"delays=0.02/0/0.3/{delay:.1f}, {tail}"))
        lines.append(("postfix/qmgr", 22, f"{qid}: removed"))
        self.lines = lines


class Corpus:
    def __init__(self, r):
        self.r = r
        self.p = Pools(r)
        self.flows = []
        self.ldap_conns = []
        self.next_conn = 1000
        self.pids = {}

    def pid(self, host, app):
        key = (host, app)
        if key not in self.pids or self.r.random() < 0.0005:
            self.pids[key] = self.r.randrange(300, 60000)
        return self.pids[key]

    def mail(self):
        r = self.r
        while len(self.flows) < 40:
            self.flows.append(Flow(r, self.p, r.choice(["mta1", "mta2"])))
        f = self.flows[int(len(self.flows) * r.random() ** 2)]
        app, pri, msg = f.lines.pop(0)
        if not f.lines:
            self.flows.remove(f)
        return f.host, app, pri, msg

    def slapd(self):
        r, p = self.r, self.p
        if len(self.ldap_conns) < 8 or r.random() < 0.02:
            self.next_conn += 1
            self.ldap_conns.append([self.next_conn, 0])
        c = r.choice(self.ldap_conns)
        conn, op = c
        c[1] += 1
        if op == 0:
            msg = f"conn={conn} fd={r.randrange(12, 90)} ACCEPT from IP=10.0.1.{r.randrange(10, 20)}:{r.randrange(30000, 60000)} (IP=0.0.0.0:389)"
        elif op == 1:
            msg = f"conn={conn} op={op} BIND dn=\"uid=zmpostfix,cn=appaccts,cn=zimbra\" method=128"
        elif r.random() < 0.5:
            msg = (f"conn={conn} op={op} SRCH base=\"\" scope=2 deref=0 "
                   f"filter=\"(&(|(zimbraMailDeliveryAddress={p.pick(p.locals)})(zimbraMailAlias={p.pick(p.locals)}))(zimbraMailStatus=enabled))\"")
        else:
            msg = f"conn={conn} op={op} SEARCH RESULT tag=101 err=0 qtime=0.000010 etime=0.000{r.randrange(100, 999)} nentries=1 text="
        if op > 40 and r.random() < 0.05:
            self.ldap_conns.remove(c)
            msg = f"conn={conn} fd={r.randrange(12, 90)} closed"
        return "ldap1", "slapd", 166, msg

    def nginx(self, t):
        r, p = self.r, self.p
        status = r.choices([200, 304, 401, 404, 502], [85, 8, 3, 3, 1])[0]
        return "proxy1", "nginx", 166, (
            f"{p.pick(p.web_ips)}:{r.randrange(1024, 65535)} - - [{time.strftime('%d/%b/%Y:%H:%M:%S +0000', t)}]  "
            f"\"GET https://mail.example.com{p.pick(PATHS)} HTTP/1.1\" {status} {int(r.lognormvariate(7, 1.5))} \"-\" "
            f"\"{p.pick(AGENTS)}\" \"10.0.1.{r.randrange(10, 13)}:8080\" \"10.0.0.2:443\"")

    def audit(self):
        r, p = self.r, self.p
        account = p.pick(p.locals)
        host = f"mbox{r.randrange(1, 4)}"
        if r.random() < 0.9:
            return host, "audit", 134, (f"INFO  [qtp{r.randrange(100, 999)}-{r.randrange(10, 99)}:https://mail.example.com/service/soap/AuthRequest] "
                                        f"[name={account};oip={p.pick(p.web_ips)};ua={p.pick(AGENTS)};] security - cmd=Auth; account={account}; protocol=soap;")
        return host, "audit", 132, (f"WARN  [ImapSSLServer-{r.randrange(1, 99)}] [ip={p.pick(p.attackers)};] security - cmd=Auth; "
                                    f"account={account}; protocol=imap; error=authentication failed for [{account}], invalid password;")

    def sshd(self):
        r, p = self.r, self.p
        host = r.choice(["mta1", "proxy1", "mbox1"])
        if r.random() < 0.8:
            return host, "sshd", 38, (f"Failed password for invalid user {r.choice(FIRST + ['admin', 'root', 'test', 'oracle'])} "
                                      f"from {p.pick(p.attackers)} port {r.randrange(1024, 65535)} ssh2")
        return host, "sshd", 38, f"Accepted publickey for zextras from 10.0.9.{r.randrange(2, 6)} port {r.randrange(1024, 65535)} ssh2: ED25519 SHA256:Xk3p0tq2nWc1vYkQ9oZz5Jd8bLq4sT7uR2eA6hN1mF0"

    def cron(self):
        r = self.r
        return r.choice(["mta1", "mbox1", "ldap1"]), "CRON", 78, r.choice([
            "(zextras) CMD (/opt/zextras/libexec/zmstatuptime >> /dev/null 2>&1)",
            "(zextras) CMD (/opt/zextras/libexec/zmcheckexpiredcerts -days 30 -email)",
            "(root) CMD (test -x /etc/cron.daily/popularity-contest && /etc/cron.daily/popularity-contest --crond)",
            "pam_unix(cron:session): session opened for user zextras(uid=998) by (uid=0)",
        ])

    def line(self, t):
        r = self.r
        k = r.random()
        if k < 0.70:
            host, app, pri, msg = self.mail()
        elif k < 0.82:
            host, app, pri, msg = self.slapd()
        elif k < 0.92:
            host, app, pri, msg = self.nginx(t)
        elif k < 0.96:
            host, app, pri, msg = self.audit()
        elif k < 0.98:
            host, app, pri, msg = self.sshd()
        else:
            host, app, pri, msg = self.cron()
        tag = app if app == "nginx" else f"{app}[{self.pid(host, app)}]"
        stamp = f"{MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        return f"<{pri}>{stamp} {host} {tag}: {msg}\n"


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("out")
    a.add_argument("--lines", type=int, default=10_000_000)
    a.add_argument("--start", type=int, default=(int(time.time()) // 3600 - 24) * 3600)
    a.add_argument("--span-hours", type=float, default=20.0)
    a.add_argument("--seed", type=int, default=42)
    args = a.parse_args()
    corpus = Corpus(random.Random(args.seed))
    step = args.span_hours * 3600 / args.lines
    with open(args.out, "w", buffering=1 << 20) as out:
        batch = []
        for i in range(args.lines):
            batch.append(corpus.line(time.gmtime(args.start + int(i * step))))
            if len(batch) == 10000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))


if __name__ == "__main__":
    main()
