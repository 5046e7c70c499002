"""Runs the SAM transform on template.yaml offline (no AWS account, no network):
fails if samtranslator refuses the template. `--print` writes the transformed
CloudFormation as JSON.

    .venv/bin/python tests/sam_transform.py [template.yaml] [--print]
"""

import json
import os
import sys
from unittest import mock

from cfnlint.decode import decode_str
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform


def main() -> int:
    # samtranslator asks boto for a region; an EU one, as the template's Rules require.
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-central-1")
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else "template.yaml"
    with open(path, encoding="utf-8") as f:
        template, matches = decode_str(f.read())
    if matches:
        for m in matches:
            print(m, file=sys.stderr)
        return 1
    # Local code paths become S3 URIs, as `sam package` would make them.
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(
            props.get("CodeUri"), str
        ):
            props["CodeUri"] = f"s3://eurochat-artifacts/{props['CodeUri']}"
    # The managed policies SAM may look up by name, answered offline (the template
    # names managed policies by ARN, so none should be needed).
    loader = mock.create_autospec(ManagedPolicyLoader)
    loader.load.return_value = {}
    params = {
        "AWS::Region": "eu-central-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "eurochat",
    }
    try:
        out = transform(template, params, loader)
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(f"SAM transform: {cause.message}", file=sys.stderr)
        return 1
    if "--print" in sys.argv:
        json.dump(out, sys.stdout, indent=1, default=str)
        print()
    else:
        print(f"SAM transform: {path} ok ({len(out['Resources'])} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
