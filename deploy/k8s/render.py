"""Render a kustomization of deploy/k8s/ without the kustomize binary (none is installed here).

Only the subset of kustomize that deploy/k8s/ uses, and nothing silently: a key, a patch shape or
a kind this module does not know is an error, so the tests never validate something other than
what `kubectl apply -k` would apply.

    python deploy/k8s/render.py deploy/k8s/overlays/district    # the YAML stream, to stdout

Supported (applied in this order: resources, patches, namespace, labels, images; no patch here
depends on a label, a namespace or an image, so the order kustomize uses gives the same result):

- ``resources``: YAML files (several documents each) and folders holding a kustomization.yaml;
- ``patches``: ``path`` (a file) or ``patch`` (inline), with an optional ``target`` of ``kind``
  and ``name`` (a regular expression matching the whole name, as kustomize's). A patch that is a
  list is JSON 6902 (``add``, ``replace``, ``remove``); a mapping is a strategic merge patch,
  located by its own kind and name when there is no target. The strategic merge implemented:
  mappings merge key by key, ``null`` deletes a key, lists of scalars are replaced, and lists of
  mappings merge by ``name`` only where Kubernetes' merge key is ``name`` (containers,
  initContainers, env, volumes) of a built-in kind; any other list of mappings is rejected (use
  JSON 6902), as are ``$patch`` directives;
- ``namespace``: set on every resource (all kinds used are namespaced; others are rejected);
- ``labels``: ``pairs`` added to every resource's metadata.labels (``includeSelectors`` and
  ``includeTemplates`` false, kustomize's defaults: selectors and pod templates untouched);
- ``images``: ``name`` with ``newName`` and/or ``newTag``, in the pod templates' containers.
"""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"}
PATCH_KEYS = {"path", "patch", "target"}
TARGET_KEYS = {"kind", "name"}
LABEL_KEYS = {"pairs", "includeSelectors", "includeTemplates"}
IMAGE_KEYS = {"name", "newName", "newTag"}
# The kinds deploy/k8s/ uses, all namespaced; a new kind is added here knowingly.
NAMESPACED_KINDS = {"ConfigMap", "Service", "Deployment", "Job", "PodDisruptionBudget",
                    "HorizontalPodAutoscaler", "RabbitmqCluster", "Cluster"}
CUSTOM_KINDS = {"RabbitmqCluster", "Cluster"}
# Fields whose strategic-merge key in Kubernetes' API is `name`.
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes"}
POD_TEMPLATE_KINDS = {"Deployment", "Job"}


class RenderError(Exception):
    pass


def _load_all(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def _check_keys(where: str, mapping: dict, allowed: set[str]) -> None:
    if not isinstance(mapping, dict):
        raise RenderError(f"{where}: expected a mapping, got {mapping!r}")
    unknown = set(mapping) - allowed
    if unknown:
        raise RenderError(f"{where}: unsupported key(s) {sorted(unknown)} (render.py knows {sorted(allowed)})")


def render(folder: str | Path) -> list[dict]:
    """The resources that `kustomize build folder` gives, for the subset above."""
    folder = Path(folder)
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{folder}: no kustomization.yaml")
    (kustomization,) = _load_all(path)
    _check_keys(str(path), kustomization, KUSTOMIZATION_KEYS)
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{path}: kind {kustomization['kind']!r}")

    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        resources.extend(render(target) if target.is_dir() else _load_all(target))
    for resource in resources:
        if resource.get("kind") not in NAMESPACED_KINDS:
            raise RenderError(f"{path}: kind {resource.get('kind')!r} is not one render.py handles")
    names = [(r["kind"], r["metadata"]["name"]) for r in resources]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise RenderError(f"{path}: defined twice: {sorted(duplicates)}")

    for number, patch in enumerate(kustomization.get("patches", [])):
        _apply_patch(f"{path}: patches[{number}]", folder, patch, resources)

    namespace = kustomization.get("namespace")
    for resource in resources:
        if namespace:
            resource["metadata"]["namespace"] = namespace
    for number, entry in enumerate(kustomization.get("labels", [])):
        _check_keys(f"{path}: labels[{number}]", entry, LABEL_KEYS)
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise RenderError(f"{path}: labels[{number}]: includeSelectors/includeTemplates not supported")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for number, image in enumerate(kustomization.get("images", [])):
        _check_keys(f"{path}: images[{number}]", image, IMAGE_KEYS)
        _set_image(image, resources)
    return resources


def _set_image(image: dict, resources: list[dict]) -> None:
    for resource in resources:
        if resource["kind"] not in POD_TEMPLATE_KINDS:
            continue
        pod = resource["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def _split_image(reference: str) -> tuple[str, str]:
    if "@" in reference:
        raise RenderError(f"image by digest not supported: {reference}")
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag: the colon was a registry's port, or there was none
        return reference, "latest"
    return name, tag


def _apply_patch(where: str, folder: Path, entry: dict, resources: list[dict]) -> None:
    _check_keys(where, entry, PATCH_KEYS)
    if ("path" in entry) == ("patch" in entry):
        raise RenderError(f"{where}: exactly one of path and patch")
    if "path" in entry:
        documents = _load_all(folder / entry["path"])
        if len(documents) != 1:
            raise RenderError(f"{where}: {entry['path']}: one patch a file")
        body = documents[0]
    else:
        body = yaml.safe_load(entry["patch"])
    target = entry.get("target")
    if target is not None:
        _check_keys(f"{where}: target", target, TARGET_KEYS)
        matches = [r for r in resources
                   if ("kind" not in target or r["kind"] == target["kind"])
                   and ("name" not in target or re.fullmatch(target["name"], r["metadata"]["name"]))]
    elif isinstance(body, dict):
        matches = [r for r in resources
                   if r["kind"] == body.get("kind") and r["metadata"]["name"] == body.get("metadata", {}).get("name")]
    else:
        raise RenderError(f"{where}: a JSON 6902 patch needs a target")
    if not matches:
        raise RenderError(f"{where}: matches no resource")
    for resource in matches:
        if isinstance(body, list):
            for operation in body:
                _json6902(f"{where} on {resource['kind']}/{resource['metadata']['name']}", resource, operation)
        elif isinstance(body, dict):
            body = {key: value for key, value in body.items() if key not in ("apiVersion", "kind")}
            merged = _merge(where, resource, copy.deepcopy(body), custom=resource["kind"] in CUSTOM_KINDS)
            resource.clear()
            resource.update(merged)
        else:
            raise RenderError(f"{where}: neither a mapping nor a list")


def _merge(where: str, base, patch, *, custom: bool, field: str = ""):
    if isinstance(patch, dict):
        if "$patch" in patch or any(str(key).startswith("$") for key in patch):
            raise RenderError(f"{where}: $-directives not supported")
        if not isinstance(base, dict):
            return patch
        result = dict(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = _merge(where, base.get(key), value, custom=custom, field=key)
        return result
    if isinstance(patch, list) and any(isinstance(item, dict) for item in patch):
        if custom or field not in MERGE_BY_NAME:
            raise RenderError(f"{where}: a list of mappings at {field!r}: its merge is not by name; use JSON 6902")
        result = [dict(item) for item in (base or [])]
        for item in patch:
            index = next((i for i, old in enumerate(result) if old.get("name") == item.get("name")), None)
            if index is None:
                result.append(item)
            else:
                result[index] = _merge(where, result[index], item, custom=custom)
        return result
    return patch


def _json6902(where: str, resource: dict, operation: dict) -> None:
    _check_keys(where, operation, {"op", "path", "value"})
    parts = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
    if not parts:
        raise RenderError(f"{where}: empty path")
    parent = resource
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise RenderError(f"{where}: {operation['path']}: no {part!r}") from exc
    last = parts[-1]
    op = operation["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op in ("replace", "remove") and 0 <= index < len(parent):
            if op == "replace":
                parent[index] = operation["value"]
            else:
                del parent[index]
        else:
            raise RenderError(f"{where}: {op} {operation['path']}: no such item")
    elif op == "add":
        parent[last] = operation["value"]
    elif op in ("replace", "remove"):
        if last not in parent:  # RFC 6902: replace and remove need the member to exist
            raise RenderError(f"{where}: {op} {operation['path']}: no such member")
        if op == "replace":
            parent[last] = operation["value"]
        else:
            del parent[last]
    else:
        raise RenderError(f"{where}: op {op!r} not supported")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python deploy/k8s/render.py FOLDER", file=sys.stderr)
        return 2
    yaml.safe_dump_all(render(argv[0]), sys.stdout, sort_keys=False, allow_unicode=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
