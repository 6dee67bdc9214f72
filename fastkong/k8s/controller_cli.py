"""``fastkong ingress-controller``: flags (with the manifests' environment variables as
defaults) -> :class:`~fastkong.k8s.controller.ControllerOptions` -> a running controller.

This module imports neither the Kubernetes client nor aiohttp, so that registering the
command costs the data plane nothing; the controller is imported when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

DEFAULT_HEALTH_LISTEN = "0.0.0.0:10254"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def add_parser(subparsers: Any) -> None:
    """Register ``ingress-controller`` on the ``fastkong`` command's subparsers."""
    p = subparsers.add_parser(
        "ingress-controller",
        help="watch Ingresses, the Gateway API, Services and Kong CRDs; write the config "
        "ConfigMap and/or push it to every gateway",
    )
    p.add_argument(
        "--ingress-class",
        action="append",
        metavar="NAME",
        help="ingress class to serve (repeatable; env FASTKONG_INGRESS_CLASS, comma-separated; "
        "default fastkong)",
    )
    p.add_argument(
        "--configmap",
        default=_env("FASTKONG_CONFIGMAP"),
        metavar="[NS/]NAME",
        help="ConfigMap to write kong.yml into (env FASTKONG_CONFIGMAP; empty: none)",
    )
    p.add_argument("--configmap-key", default="kong.yml", help="its key (default kong.yml)")
    p.add_argument(
        "--admin-service",
        default=_env("FASTKONG_ADMIN_SERVICE"),
        metavar="[NS/]NAME",
        help="headless admin Service whose endpoints get POST /config "
        "(env FASTKONG_ADMIN_SERVICE; empty: no push)",
    )
    p.add_argument("--admin-port-name", default="admin", help="its port name (default admin)")
    p.add_argument(
        "--proxy-service",
        default=_env("FASTKONG_PROXY_SERVICE", "fastkong-proxy"),
        metavar="[NS/]NAME",
        help="Service whose address goes into Ingress status (env FASTKONG_PROXY_SERVICE; "
        "default fastkong-proxy; empty: leave status alone)",
    )
    p.add_argument(
        "--gateway-controller-name",
        default=_env("FASTKONG_GATEWAY_CONTROLLER_NAME", "fastkong.io/gateway-controller"),
        metavar="NAME",
        help="Gateway API: serve the GatewayClasses whose spec.controllerName is this (env "
        "FASTKONG_GATEWAY_CONTROLLER_NAME; default fastkong.io/gateway-controller)",
    )
    p.add_argument(
        "--combined-services-from-different-httproutes",
        action="store_true",
        default=_env("FASTKONG_COMBINED_SERVICES") == "true",
        help="Gateway API: rules with the same backends in HTTPRoutes of one namespace share a "
        "Kong service (KIC's flag; env FASTKONG_COMBINED_SERVICES=true)",
    )
    p.add_argument(
        "--namespace",
        default=_env("POD_NAMESPACE", "default"),
        help="namespace of the controller, its Lease and unqualified names (env POD_NAMESPACE)",
    )
    p.add_argument(
        "--pod-name",
        default=_env("POD_NAME") or _env("HOSTNAME", "fastkong-controller"),
        help="this replica's identity in the Lease and in Events (env POD_NAME)",
    )
    p.add_argument("--kubeconfig", default=_env("KUBECONFIG"), help="default: in-cluster")
    p.add_argument("--no-leader-election", action="store_true", help="act as the only replica")
    p.add_argument("--lease-name", default="fastkong-controller")
    p.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS")
    p.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS")
    p.add_argument("--debounce", type=float, default=0.25, metavar="SECONDS")
    p.add_argument("--resync-period", type=float, default=1800.0, metavar="SECONDS")
    p.add_argument("--gateway-check-interval", type=float, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--health-listen",
        default=DEFAULT_HEALTH_LISTEN,
        metavar="HOST:PORT",
        help=f"/healthz and /readyz (default {DEFAULT_HEALTH_LISTEN}; empty: off)",
    )
    p.add_argument(
        "--admission-webhook-listen",
        default=_env("CONTROLLER_ADMISSION_WEBHOOK_LISTEN", "off"),
        metavar="HOST:PORT",
        help="serve the validating admission webhook over HTTPS here (KIC's flag and env "
        "CONTROLLER_ADMISSION_WEBHOOK_LISTEN; default off)",
    )
    p.add_argument(
        "--admission-webhook-cert-file",
        default=_env("CONTROLLER_ADMISSION_WEBHOOK_CERT_FILE", "/admission-webhook/tls.crt"),
        metavar="PATH",
        help="its certificate (PEM; reloaded when it changes; default /admission-webhook/tls.crt)",
    )
    p.add_argument(
        "--admission-webhook-key-file",
        default=_env("CONTROLLER_ADMISSION_WEBHOOK_KEY_FILE", "/admission-webhook/tls.key"),
        metavar="PATH",
        help="its private key (PEM; default /admission-webhook/tls.key)",
    )
    p.add_argument("--log-level", default=_env("FASTKONG_LOG_LEVEL", "info"))
    p.set_defaults(func=cmd_ingress_controller)


def options_from_args(args: argparse.Namespace) -> Any:
    from fastkong.k8s.controller import ControllerOptions  # noqa: PLC0415 - see the docstring

    classes = args.ingress_class or [
        c.strip() for c in _env("FASTKONG_INGRESS_CLASS", "fastkong").split(",") if c.strip()
    ]
    return ControllerOptions(
        namespace=args.namespace,
        pod_name=args.pod_name,
        ingress_classes=classes or ["fastkong"],
        configmap=args.configmap,
        configmap_key=args.configmap_key,
        admin_service=args.admin_service,
        admin_port_name=args.admin_port_name,
        admin_token=_env("FASTKONG_ADMIN_TOKEN") or None,
        proxy_service=args.proxy_service,
        gateway_controller=args.gateway_controller_name,
        combined_services=args.combined_services_from_different_httproutes,
        leader_election=not args.no_leader_election,
        lease_name=args.lease_name,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        debounce=args.debounce,
        resync=args.resync_period,
        gateway_check_interval=args.gateway_check_interval,
        health_listen=args.health_listen,
        admission_listen=""
        if args.admission_webhook_listen in ("", "off")
        else (args.admission_webhook_listen),
        admission_cert_file=args.admission_webhook_cert_file,
        admission_key_file=args.admission_webhook_key_file,
    )


def cmd_ingress_controller(args: argparse.Namespace) -> int:
    from fastkong.k8s.controller import main  # noqa: PLC0415 - see the docstring

    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return main(options_from_args(args), args.kubeconfig or None)
