"""hoist's nftables table, rebuilt from the records in one transaction.

Everything hoist adds lives in ``table ip hoist``: base chains on the prerouting, output,
postrouting, forward and raw-prerouting hooks, one chain per network (``n-<id12>``: outbound
masquerade unless internal, the loopback and hairpin masquerade, isolation from every other
interface) and one per container with published ports (``c-<id12>``: its DNAT rules). The
table is regenerated from the network files and the *live* endpoint records and swapped in
atomically (``nft -f``: add, delete, add in one batch), so the kernel always holds exactly what
the records say: a container's rules go when its record goes, a crashed container's when the
next sweep drops its record, and the table itself when nothing is left.

Published ports reach the container by DNAT alone, also from the host's own 127.0.0.1 (the
output hook, ``route_localnet`` on the bridge and a masquerade of 127.0.0.0/8 sources):
nothing is proxied in user space. A container could otherwise send packets to 127.0.0.0/8 of
the host through its bridge (route_localnet accepts them), so those are dropped at raw
prerouting, before conntrack undoes a masquerade (replies to 127.0.0.1 still arrive for the
gateway address then).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from runtime.network import NetworkError, NftMissing

if TYPE_CHECKING:
    from runtime.network.ipam import Network, Record

TABLE = "hoist"


def nft_path() -> str:
    path = shutil.which("nft", path=os.environ.get("PATH", "") or os.defpath)
    if path is None:
        raise NftMissing("nftables is not installed: `nft` was not found in PATH "
                         "(install the nftables package; --network bridge and -p need it)")
    return path


def _q(name: str) -> str:
    return json.dumps(name)  # an interface name in nft syntax (a quoted string)


def render(networks: list[Network], records: list[Record]) -> str:
    """The whole table as nft syntax (empty when there is nothing to hold)."""
    if not networks and not any(r.ports for r in records):
        return ""
    by_name = {n.name: n for n in networks}
    out = [f"table ip {TABLE} {{"]
    out.append("  chain raw-pre { type filter hook prerouting priority raw; policy accept;")
    for n in networks:
        out.append(f"    iifname {_q(n.bridge)} ip daddr 127.0.0.0/8 drop")
    out.append("  }")
    out.append("  chain nat-pre { type nat hook prerouting priority dstnat; policy accept;")
    out.append("    fib daddr type local jump published")
    out.append("  }")
    out.append("  chain nat-out { type nat hook output priority -100; policy accept;")
    out.append("    fib daddr type local jump published")
    out.append("  }")
    out.append("  chain nat-post { type nat hook postrouting priority srcnat; policy accept;")
    for n in networks:
        out.append(f"    jump n-{n.id[:12]}-post")
    out.append("  }")
    out.append("  chain filter-forward { type filter hook forward priority filter; policy accept;")
    for n in networks:
        out.append(f"    jump n-{n.id[:12]}-fwd")
    out.append("  }")
    for n in networks:
        br = _q(n.bridge)
        out.append(f"  chain n-{n.id[:12]}-post {{")
        out.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
        out.append(f"    iifname {br} oifname {br} ct status dnat masquerade")
        if not n.internal:
            out.append(f"    ip saddr {n.subnet} oifname != {br} masquerade")
        out.append("  }")
        out.append(f"  chain n-{n.id[:12]}-fwd {{")
        if n.internal:
            out.append(f"    iifname {br} oifname != {br} drop")
            out.append(f"    oifname {br} iifname != {br} drop")
        else:
            out.append(f"    oifname {br} iifname != {br} ct state established,related accept")
            out.append(f"    oifname {br} iifname != {br} ct status dnat accept")
            out.append(f"    oifname {br} iifname != {br} drop")
        out.append("  }")
    out.append("  chain published {")
    chains = []
    for r in records:
        rules = _port_rules(r, by_name)
        if rules:
            out.append(f"    jump c-{r.container[:12]}")
            chains.append((r, rules))
    out.append("  }")
    for r, rules in chains:
        out.append(f"  chain c-{r.container[:12]} {{")
        out += [f"    {rule}" for rule in rules]
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def _port_rules(rec: Record, networks: dict[str, Network]) -> list[str]:
    if not rec.ports or not rec.endpoints:
        return []
    # Published ports go to the container's first non-internal network, as docker.
    ep = next((e for e in rec.endpoints if e.network in networks and not networks[e.network].internal), None)
    if ep is None:
        return []
    rules = []
    for b in rec.ports:
        match = "" if b["host_ip"] == "0.0.0.0" else f"ip daddr {b['host_ip']} "
        rules.append(f"{match}{b['proto']} dport {int(b['host_port'])} "
                     f"dnat to {ep.ip}:{int(b['container_port'])}")
    return rules


def _run(script: str, check_only: bool = False) -> None:
    argv = [nft_path(), "-f", "-"] + (["-c"] if check_only else [])
    res = subprocess.run(argv, input=script, capture_output=True, text=True)
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["(no message)"])[0]
        raise NetworkError(f"nftables refused hoist's rules: {first}")


def apply(networks: list[Network], records: list[Record]) -> None:
    """Replace the table with what ``networks`` and live ``records`` need, atomically."""
    body = render(networks, records)
    # "add table" makes the delete valid when the table does not exist yet; all three lines are
    # one transaction, so no packet ever sees the table half built.
    _run(f"add table ip {TABLE}\ndelete table ip {TABLE}\n{body}")


def table_exists() -> bool:
    res = subprocess.run([nft_path(), "list", "table", "ip", TABLE], capture_output=True)
    return res.returncode == 0
