"""Security scan of the deployed template: checkov on the plain CloudFormation that the
SAM transform makes of template.yaml (tests/sam_transform.py, offline), so it sees what
SAM generates too (the functions' roles and permissions, the HTTP API's stage, the
schedule and its role), not only what template.yaml spells out.

Every finding is either fixed in template.yaml or skipped there, on its resource, with a
written reason, in checkov's own form:

    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_117
            comment: No VPC - the function calls only regional AWS APIs ...

A skip on an AWS::Serverless::* resource also covers the resources SAM generates from it
(logical ids that start with its id: <Fn>Role, <Fn><Event>Permission, <Fn>Schedule,
<Fn>ScheduleRole, <Api>ApiGatewayDefaultStage, ...), whose Metadata the template cannot
set. SAM itself copies a function's Metadata onto its AWS::Lambda::Function, so checkov
run by hand on the transformed template honours the functions' skips too. Nothing is
skipped anywhere else (.checkov.yaml holds settings only).

checkov scans the template with every skip removed; this script then matches each
finding to a written skip. It fails (exit 1) on: a finding no skip covers; a skip
without a reason; a skip that covers no finding (a wrong id, or a finding since fixed:
remove the skip); a template that does not transform or that checkov cannot read.
Exit 2 when a tool is missing.

    .venv/bin/python tests/checkov_scan.py [template.yaml]
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
CONFIG = ROOT / ".checkov.yaml"
CHECK_ID = re.compile(r"^CKV2?_[A-Z0-9]+_[0-9]+$")
MIN_REASON = 20  # characters: a reason, not a placeholder


def written_skips(resources: dict, errors: list[str]) -> dict[str, dict[str, str]]:
    """logical id -> {check id: reason}, for the skips template.yaml writes."""
    written: dict[str, dict[str, str]] = {}
    for logical_id, resource in resources.items():
        metadata = resource.get("Metadata") or {}
        if not isinstance(metadata, dict) or "checkov" not in metadata:
            continue
        checkov = metadata["checkov"]
        skips = checkov.get("skip") if isinstance(checkov, dict) else None
        if not isinstance(skips, list):
            errors.append(f"{logical_id}: Metadata.checkov must be {{skip: [{{id: CKV_..., comment: <reason>}}]}}")
            continue
        for skip in skips:
            if not isinstance(skip, dict) or not isinstance(skip.get("id"), str):
                errors.append(f"{logical_id}: malformed checkov skip {skip!r} (want id: CKV_..., comment: <reason>)")
                continue
            check_id, comment = skip["id"], skip.get("comment")
            if not CHECK_ID.match(check_id):
                errors.append(f"{logical_id}: skip id {check_id!r} is not a checkov check id")
            if not isinstance(comment, str) or len(comment.strip()) < MIN_REASON:
                errors.append(f"{logical_id}: skip of {check_id} has no written reason (comment: ...)")
            if check_id in written.get(logical_id, {}):
                errors.append(f"{logical_id}: {check_id} is skipped twice")
            written.setdefault(logical_id, {})[check_id] = str(comment or "")
    return written


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    template_path = Path(args[0] if args else ROOT / "template.yaml")
    if not os.access(CHECKOV, os.X_OK):
        print(f"error: checkov ({CHECKOV}) is missing; run 'make setup'", file=sys.stderr)
        return 2
    if not CONFIG.is_file():
        print(f"error: {CONFIG} is missing", file=sys.stderr)
        return 2

    errors: list[str] = []

    # 1. The skips written in the template.
    source, matches = decode_str(template_path.read_text(encoding="utf-8"))
    if matches:
        for m in matches:
            print(m, file=sys.stderr)
        return 1
    source_resources = source.get("Resources", {})
    written = written_skips(source_resources, errors)

    # 2. The template as CloudFormation gets it, after the SAM transform.
    transform = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sam_transform.py"), str(template_path), "--print"],
        capture_output=True,
        text=True,
        check=False,
    )
    if transform.returncode != 0:
        sys.stderr.write(transform.stderr)
        print("error: the SAM transform failed; nothing was scanned", file=sys.stderr)
        return 1
    transformed = json.loads(transform.stdout)
    out_resources = transformed.get("Resources", {})

    # 3. Which template resource owns each scanned one: itself, or the SAM resource that
    # generated it (the longest SAM logical id its own id starts with).
    sam_ids = sorted(
        (i for i, r in source_resources.items() if str(r.get("Type", "")).startswith("AWS::Serverless::")),
        key=len,
        reverse=True,
    )
    owner: dict[str, str] = {}
    for logical_id, resource in out_resources.items():
        if logical_id in source_resources:
            owner[logical_id] = logical_id
        else:
            found = next((s for s in sam_ids if logical_id.startswith(s)), None)
            if found:
                owner[logical_id] = found
        # checkov sees no skip: every finding comes back, and is matched below
        metadata = resource.get("Metadata")
        if isinstance(metadata, dict):
            metadata.pop("checkov", None)
            metadata.pop("bridgecrew", None)

    # 4. The scan.
    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        scanned = Path(tmp) / "template.transformed.json"
        scanned.write_text(json.dumps(transformed, indent=1, default=str), encoding="utf-8")
        env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_NO_OUTPUT_FILE_WARN="TRUE")
        run = subprocess.run(
            [
                str(CHECKOV),
                "--config-file", str(CONFIG),
                "--file", str(scanned),
                "--output", "json",
                "--output-file-path", tmp,
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,  # the report is read from the file
            check=False,
        )
        report_path = Path(tmp) / "results_json.json"
        if not report_path.is_file():
            print(f"error: checkov wrote no report (exit {run.returncode})", file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text(encoding="utf-8"))

    if isinstance(report, list):  # one entry per framework
        report = next((r for r in report if r.get("check_type") == "cloudformation"), report[0])
    if "results" not in report:  # a bare summary: nothing was scanned
        print(f"error: checkov scanned no CloudFormation resources: {report}", file=sys.stderr)
        return 1
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    if summary.get("parsing_errors"):
        errors.append(f"checkov could not parse the transformed template ({summary['parsing_errors']} errors)")
    if summary.get("resource_count", 0) < len(out_resources) // 2:
        errors.append(
            f"checkov saw {summary.get('resource_count')} of {len(out_resources)} resources: "
            "it is not scanning the template"
        )

    # 5. Each finding against the skips; each skip against the findings.
    used: set[tuple[str, str]] = set()
    skipped: Counter[str] = Counter()
    open_findings = 0
    for f in failed:
        scanned_id = f["resource"].split(".", 1)[-1]
        check_id = f["check_id"]
        by = owner.get(scanned_id)
        if by and check_id in written.get(by, {}):
            used.add((by, check_id))
            skipped[check_id] += 1
            continue
        open_findings += 1
        hint = f" (generated by SAM from {by}: fix or skip it there)" if by and by != scanned_id else ""
        print(f"FAILED {check_id} {f['resource']}{hint}: {f['check_name']}")
    for logical_id, skips in written.items():
        for check_id in skips:
            if (logical_id, check_id) not in used:
                errors.append(
                    f"{logical_id}: the skip of {check_id} covers no finding (wrong id, or fixed since: remove the skip)"
                )

    print(
        f"checkov {summary.get('checkov_version')}: {summary['resource_count']} resources, "
        f"{summary['passed']} checks pass, {open_findings} findings open, "
        f"{sum(skipped.values())} skipped with a reason in {template_path.name}"
        + (" (" + ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items())) + ")" if skipped else "")
    )
    if open_findings:
        errors.append(
            f"{open_findings} findings are neither fixed nor skipped: fix each in the template, or skip it "
            "on its resource with Metadata: {checkov: {skip: [{id: CKV_..., comment: <reason>}]}}"
        )
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
