"""``spineplan pacs {echo,find,get}``: query/retrieve from a configured PACS node."""

from __future__ import annotations

import json

from ..core.errors import InvalidInputError
from ..core.pacs import PacsNode, echo, find_series, get_series


def run(args) -> int:
    node = PacsNode(args.host, args.port, called_aet=args.aec, calling_aet=args.aet)
    if args.action == "echo":
        echo(node)
        print(f"C-ECHO to {args.aec}@{args.host}:{args.port}: ok")
        return 0
    if args.action == "find":
        print(json.dumps({"series": find_series(node, patient_id=args.patient_id,
                                                study_uid=args.study_uid)}, indent=1))
        return 0
    if not (args.study_uid and args.series_uid and args.output):
        raise InvalidInputError("pacs get needs --study-uid, --series-uid and -o FOLDER")
    files = get_series(node, args.study_uid, args.series_uid, args.output)
    print(f"retrieved {len(files)} files into {args.output}")
    return 0
