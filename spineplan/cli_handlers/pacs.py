"""``spineplan pacs {echo,find,get}``: the same core/pacs code as the GUI, over DIMSE or DICOMweb."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..core.errors import InvalidInputError
from ..core.pacs import (DicomWebEndpoint, DimseClient, PacsNode, Query, RetrieveMethod, SecretStore,
                         download_series, load_settings, locate_series, parse_date_range, search)


def client_from_args(args):
    """The DIMSE or DICOMweb client the arguments name (``--node``, ``--dicomweb`` or ``--host``)."""
    if args.node:
        settings = load_settings()
        if args.node in settings.nodes:
            ns = settings.nodes[args.node]
            if args.move:
                return DimseClient(ns.node, RetrieveMethod.MOVE)
            return ns.client()
        if args.node in settings.endpoints:
            return settings.web_client(args.node, SecretStore())
        raise InvalidInputError(f"no PACS node or endpoint named '{args.node}' in the settings")
    if args.dicomweb:
        from ..core.pacs import DicomWebClient

        return DicomWebClient(DicomWebEndpoint(args.dicomweb, timeout_s=args.timeout))
    if not args.host or args.port is None:
        raise InvalidInputError("give --host H --port P [--called-aet AET], or --dicomweb URL, "
                                "or --node NAME")
    node = PacsNode(args.host, args.port, called_aet=args.called_aet, calling_aet=args.aet,
                    timeout_s=args.timeout, store_port=args.store_port)
    return DimseClient(node, RetrieveMethod.MOVE if args.move else RetrieveMethod.GET)


def _query(args) -> Query:
    lo, hi = parse_date_range(args.study_date)
    return Query(patient_name=args.patient_name or "", patient_id=args.patient_id or "",
                 accession=args.accession or "", date_from=lo, date_to=hi,
                 modality=(args.modality or "").upper(), study_uid=args.study_uid or "")


def run(args) -> int:
    client = client_from_args(args)
    if args.action == "echo":
        client.echo()
        print(f"echo {client.describe()}: ok")
        return 0
    if args.action == "find":
        studies = search(client, _query(args))
        if args.json:
            print(json.dumps({"studies": [asdict(s) for s in studies]}, indent=1))
            return 0
        for st in studies:
            print(f"study {st.study_uid}  {st.date}  {st.description}  ({len(st.series)} series)")
            for se in st.series:
                print(f"  series {se.series_uid}  {se.modality}  {se.n_images} images  {se.description}")
        print(f"{len(studies)} studies")
        return 0
    if not (args.series_uid and args.output):
        raise InvalidInputError("pacs get needs --series UID and -o FOLDER")
    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} exists and is not an empty folder")
    series = locate_series(client, args.series_uid, args.study_uid or "")
    staging = out.parent / f".{out.name}.partial"

    def progress(fraction, message):
        print(f"\r{message}", end="", file=sys.stderr, flush=True)

    if out.is_dir():
        out.rmdir()
    try:
        download_series(client, series, out, staging, progress=progress)
    finally:
        print(file=sys.stderr)
    n = len(list(out.glob("*.dcm")))
    print(f"retrieved {n} images of series {series.series_uid} into {out}")
    return 0
