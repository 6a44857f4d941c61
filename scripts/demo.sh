#!/usr/bin/env bash
# The whole product on this machine, against a local AWS emulator: deploy, configure, snapshot,
# clean, replicate, keep disaster-recovery copies, check, lock. Nothing leaves the machine. Run from the project root:
#
#   scripts/demo.sh
#
# It installs what it needs into .venv, builds (debug), starts the emulator on loopback and
# stops it again when it ends, fails, or is interrupted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/functions.sh
source scripts/testbed/emulator.sh

say() { printf '\n\033[1m== %s\033[0m\n%s\n' "$1" "$2"; }
snapper() { printf '$ ebs-snapper %s\n' "$*"; target/debug/ebs-snapper "$@"; }
fleet() { "$VENV_DIR/bin/python" scripts/lib/demo_fleet.py "$@"; }

say "Setup" "Python tools into .venv, a debug build of the CLI and the five functions, their zips."
ensure_venv >/dev/null
cargo build --quiet --workspace --bins
scripts/package.sh --debug --host >/dev/null
MOTO_RECORD=0 start_moto
echo "AWS emulator at $AWS_ENDPOINT_URL (pid $MOTO_PID), dummy credentials; the account is the emulator's default."

say "A small fleet in two regions" "Instances tagged backup=yes with extra data volumes; one stopped, one to be ignored; one in us-west-2 whose snapshots replicate to us-east-1."
eval "$(fleet fleet)"
echo "$FLEET"

say "Deploy" "The CloudFormation stack (table, role, five functions, schedules) goes into the emulator; a second deploy changes nothing."
snapper deploy -n 2>/dev/null
snapper deploy -n 2>/dev/null | grep -E "no changes|code unchanged" | head -2

say "Configure" "Two configurations: hourly for the shop (with one instance ignored and replication on), daily for the ledger. A typo is refused."
snapper configure -s shop "{\"match\": {\"tag:backup\": \"yes\"}, \"snapshot\": {\"retention\": \"7 days\", \"minimum\": 3, \"frequency\": \"1 hour\"}, \"ignore\": [\"$IGNORED_INSTANCE\"], \"replication\": \"yes\"}"
snapper configure -s ledger '{"match": {"tag:backup": "daily"}, "snapshot": {"retention": "30 days", "minimum": 7, "frequency": "cron(0 1 * * ? *)"}}'
snapper configure -s broken '{"match": {"tag:backup": "yes"}, "snapshot": {"retension": "7 days", "minimum": 3, "frequency": "1 hour"}}' || true
snapper configure -l

say "Snapshot" "Every attached volume of every matched instance gets one snapshot with its tags (the stopped batch-1 too); the ignored instance's two volumes get none. Running again at once takes none."
snapper snapshot
fleet snapshots us-east-1
fleet snapshots us-west-2
snapper snapshot --region us-east-1

say "Policies" "The payments configuration keeps daily, weekly and monthly tiers, leaves out scratch volumes, takes pay-1's root and data volumes as one crash-consistent set (one call), tags every snapshot Team=payments, and keeps disaster-recovery copies in eu-west-1 under that region's own KMS key. A fresh volume is due for every tier: one snapshot serves all three, kept for the longest retention."
DR_KEY=$(fleet key eu-west-1)
echo "KMS key for the copies: $DR_KEY"
snapper configure -s payments '{"match": {"tag:backup": "tiered"}, "schedules": [{"name": "daily", "frequency": "cron(0 3 * * ? *)", "retention": "8 days", "minimum": 7}, {"name": "weekly", "frequency": "cron(0 3 ? * SUN *)", "retention": "35 days", "minimum": 4}, {"name": "monthly", "frequency": "cron(0 3 1 * ? *)", "retention": "400 days", "minimum": 12, "archive": true}], "exclude_tags": {"kind": "scratch"}, "consistency": "instance", "tags": {"Team": "payments"}, "copies": [{"region": "eu-west-1", "retention": "90 days", "minimum": 3, "kms_key": "'"$DR_KEY"'"}]}'
snapper snapshot --region us-east-1 --dry-run | grep "$PAY_INSTANCE"
snapper snapshot --region us-east-1
fleet snapshots us-east-1 | grep -E "^snapshot |$PAY_INSTANCE"

say "Clean" "Six planted snapshots of one volume expired 2 to 40 days ago; with minimum 3 and one fresh snapshot, the dry run plans to delete the 4 oldest and keep 2; then clean does it."
fleet expire us-east-1
snapper clean --region us-east-1 --dry-run | grep -v "not expired"
snapper clean --region us-east-1

say "Replication" "The ledger's two snapshots in us-west-2 carry replication_dst_region=us-east-1 (copied from the instance's tags): each gets one copy there, tagged with its source; the payments snapshots in us-east-1 carry ebs-snapper:copy-to=eu-west-1 and get their disaster-recovery copies there. A second run copies nothing."
snapper replication
snapper replication --region us-west-2
fleet snapshots us-east-1 | grep -E "^snapshot |us-west-2"

say "Disaster-recovery copies" "Each copy in eu-west-1 is encrypted with the configured key and carries its own DeleteOn (copy date + 90 days) and its source volume. Delete pay-1's snapshots in us-east-1: the copies stay, because they live by their own date, and clean in eu-west-1 counts them per source volume against that region's minimum of 3."
fleet copies eu-west-1
fleet drop us-east-1 "$PAY_INSTANCE"
snapper replication --region eu-west-1 --dry-run
snapper clean --region eu-west-1 --dry-run
fleet copies eu-west-1 | head -1

say "Check" "configure -c reports what an operator should look at: here an instance tagged backup=weekly that no configuration matches."
snapper configure -c

say "Status" "What is protected, volume by volume, worst first (the ignored instance's and the excluded scratch volume are not listed): pay-1's two volumes come first as never, since the demo deleted their snapshots (their copies in eu-west-1 remain); every other selected volume is ok, and COPIES says whether its newest snapshot has been copied. It only reads."
snapper status

say "Snapshot lock" "The ledger's snapshots get a compliance lock (no cool-off: in force at once; configure warns what that costs). The next snapshot run finds them unlocked and locks each until its DeleteOn; then someone holding the account's keys tries to delete them, and EC2 refuses; status shows the lock."
snapper configure -s ledger '{"match": {"tag:backup": "daily"}, "snapshot": {"retention": "30 days", "minimum": 7, "frequency": "cron(0 1 * * ? *)", "lock": {"mode": "compliance"}}}'
snapper snapshot --region us-west-2
fleet try-delete us-west-2 ledger
snapper status --region us-west-2

say "Vault account" "A vault account gets its role (deploy --vault, with the vault's credentials), the stack may share with it (VaultAccountIds), and a configuration keeps a copy of each snapshot there, locked in compliance mode. Replication shares the new snapshot, the vault copies and locks it; then the protected account's snapshots are deleted: the vault's copy stays, and the protected account cannot delete it."
eval "$(fleet vault-env)"
DEPLOYMENT_ACCOUNT=$(target/debug/ebs-snapper configure -l | awk -F, 'NR==2 {print $1}')
echo "vault account $VAULT_ACCOUNT, deployment $DEPLOYMENT_ACCOUNT"
env $VAULT_ENV target/debug/ebs-snapper deploy --vault "$DEPLOYMENT_ACCOUNT" 2>/dev/null
snapper deploy -n --parameter VaultAccountIds="$VAULT_ACCOUNT" 2>/dev/null | tail -1
eval "$(fleet vault-instance)"
snapper configure -s vaulted '{"match": {"tag:backup": "vault"}, "snapshot": {"retention": "30 days", "minimum": 3, "frequency": "1 day"}, "vault": {"account": "'"$VAULT_ACCOUNT"'", "retention": "90 days", "lock": {"mode": "compliance"}}}'
snapper snapshot --region us-east-1
snapper replication --region us-east-1
fleet drop us-east-1 "$VAULTED_INSTANCE"
fleet vault-copies us-east-1

say "Restore drills" "A drill proves a snapshot restores: the ledger's configuration gets a weekly drill; drill --dry-run says which volumes are due and why, then the drill makes a gp3 volume from each newest snapshot, reads 4 random blocks back through the EBS direct APIs checking their SHA-256, deletes the volume and tags the result on the snapshot. status shows it in the DRILL column; the clean job runs the due drills after its retention work."
snapper configure -s ledger '{"match": {"tag:backup": "daily"}, "snapshot": {"retention": "30 days", "minimum": 7, "frequency": "cron(0 1 * * ? *)", "lock": {"mode": "compliance"}}, "drill": {"every": "7 days", "per_run": 3, "sample_blocks": 4}}'
snapper drill --region us-west-2 --dry-run
snapper drill --region us-west-2
snapper status --region us-west-2

say "Done" "The emulator stops now; nothing was sent beyond this machine."
