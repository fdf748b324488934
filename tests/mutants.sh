#!/usr/bin/env bash
# Mutation testing of the decision functions: does any test fail when the code
# that decides (verify, health, authorization, idempotency, revocation, the
# send rules, membership identity, agent activity) is changed? Prints, per
# file: mutants, caught, missed, unviable, timeouts, and every missed mutant.
#
# Not part of CI (it rebuilds once per mutant: about 30 minutes on 2 cores).
# Figures and the equivalent mutants: docs/quality.md.
#
#   bash tests/mutants.sh            # all files below
#   bash tests/mutants.sh verify     # only files whose path matches
#
# It mutates the work tree in place (fast: incremental builds) and puts every
# file back when a mutant is done; run it on a clean tree and do not edit while
# it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null 2>&1 || cargo install --locked cargo-mutants
filter=${1:-}

# package | file | functions (a regex over mutant names; empty: the whole file).
# heartbeat.rs: the health judgement and the parsing it rests on; not
# Timestamp::parts (formatting: 741 mutants of its six-number tuple).
# send.rs: the send decisions (not found or an error, Enter once and after the
# pause, verify until the timeout, the outcome words); not buffer_name, capture.
# activity.rs: the activity decision and the parsing it rests on (hook files,
# screen rules, the bottom lines they look at); not the Display and render
# helpers. notify.rs: control-mode lines read as events, octal escapes.
# queue.rs: the durable queue's decisions: when a message may be typed (release), how a
# delivery begins after a crash (begin), what may be cancelled or expired (may_drop).
# roster_edit.rs: the guards of fleet add/remove (guard and its two helpers), not the text
# edits (checked by parsing their result). check.rs: fleet verify's findings.
# screen.rs: the screen hash, "unchanged since" and the activity of a row;
# not read_one, Screens, read_hook, load_rules (reading, not deciding).
# enroll.rs: the join token's verification (parse, constant-time compare, once, until
# its expiry, bound host) and the renewal decision (when, which state, when to look
# again); not the store's file I/O, CSR signing or the TLS verifier.
targets=(
  "fleet-core|crates/fleet-core/src/verify.rs|"
  "fleet-core|crates/fleet-core/src/message.rs|"
  "fleet-core|crates/fleet-core/src/heartbeat.rs|judge_with_pane|assess|Health|Heartbeat::parse|Timestamp::(parse|offset)"
  "fleet-tls|crates/fleet-tls/src/authz.rs|"
  "fleet-tls|crates/fleet-tls/src/principal.rs|"
  "fleet-node|crates/fleet-node/src/idem.rs|"
  "fleet-node|crates/fleet-node/src/idle.rs|"
  "fleet-node|crates/fleet-node/src/queue.rs|release|begin|may_drop|State::finished|parse_duration"
  "fleet-node|crates/fleet-node/src/revocation.rs|"
  "fleet-tmux|crates/fleet-tmux/src/send.rs|Outcome::|find_pane|send_via_control|in send$|replace send ->"
  "fleet-node|crates/fleet-node/src/membership.rs|claim_holds|is_placeholder|believable|believes|JoinBurst"
  "fleet-node|crates/fleet-node/src/membership/sync.rs|sync_period|SyncPolicy|sync_target|encode_sync|sync_frame_len|decode_sync|vet_synced"
  "fleet-node|crates/fleet-node/src/replica.rs|is_stale|send_rows|host_row|rows_key|needs_fetch|resting|is_behind|copy_row|copy_rows|shared_key|shared_row|same_row"
  "fleet-node|crates/fleet-node/src/versions.rs|"
  "fleet-core|crates/fleet-core/src/activity.rs|decide|Verdict::since|HookState::parse|ScreenRules::(parse|judge)|bottom_lines|State::parse|Source::parse"
  "fleet-tmux|crates/fleet-tmux/src/notify.rs|Reader::feed|unescape"
  "fleet-tmux|crates/fleet-tmux/src/screen.rs|remember|digest|judge"
  "fleet-tls|crates/fleet-tls/src/enroll.rs|check_token|ct_eq|JoinToken::from_str|unhex32|TokenStore::consume|renew_at|cert_state|next_look"
  "fleet-core|crates/fleet-core/src/roster_edit.rs|in guard$|replace guard |in is_class$|replace is_class |in same$|replace same "
  "fleet-core|crates/fleet-core/src/check.rs|"
)

out_root=target/mutants
mkdir -p "$out_root"
printf '%-45s %8s %7s %7s %9s %9s\n' file mutants caught missed unviable timeouts
for t in "${targets[@]}"; do
  IFS='|' read -r pkg file re <<<"$t"
  [[ -n "$filter" && "$file" != *"$filter"* ]] && continue
  out="$out_root/$(basename "$file" .rs)"
  args=(--in-place --no-shuffle -f "$file" --test-package "$pkg" -o "$out")
  [[ -n "$re" ]] && args+=(--re "$re")
  cargo mutants "${args[@]}" >"$out.log" 2>&1 || true
  python3 - "$file" "$out/mutants.out/outcomes.json" <<'PY'
import json, sys
file, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
print(f'{file:45} {d["total_mutants"]:8} {d["caught"]:7} {d["missed"]:7} {d["unviable"]:9} {d["timeout"]:9}')
for o in d["outcomes"]:
    if o["summary"] == "MissedMutant":
        print("    missed:", o["scenario"]["Mutant"]["name"])
PY
done
