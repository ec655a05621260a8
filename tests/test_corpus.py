"""Real pipeline shapes, written afresh, pasted into templates: they render unchanged (ids added) and validate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from pipeline_sync.identity import artifact_id_for, pipeline_id_for, trigger_id_for
from pipeline_sync.render import Renderer
from pipeline_sync.validate import validate_pipeline

if TYPE_CHECKING:
    from conftest import MakeProject

APP = "checkout"
CHART = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c01"
VALUES = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c02"
BAKED = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c03"
IMAGE = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c04"
GCS_MANIFEST = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c05"
KUSTOMIZE_SRC = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c06"
KUSTOMIZED = "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c07"
UPSTREAM = "8e3f0d2b-1c59-4a6e-b7d4-90ac3e5f1a10"
ENV_CONFIG = "https://config.example.com/checkout/${parameters['env']}.json"

SLACK = {"type": "slack", "address": "checkout-deploys", "level": "pipeline", "when": ["pipeline.failed"]}


def chart_artifact() -> dict[str, Any]:
    reference = {
        "artifactAccount": "harbor",
        "name": "workload-chart",
        "type": "helm/chart",
        "version": "1.4.0",
    }
    return {
        "id": CHART,
        "displayName": "workload-chart",
        "matchArtifact": dict(reference),
        "defaultArtifact": {**reference, "id": "5d2a8c1e-7b40-4f7a-9c11-2e6f4a1b0c99"},
        "useDefaultArtifact": True,
        "usePriorArtifact": False,
    }


def values_artifact() -> dict[str, Any]:
    return {
        "id": VALUES,
        "displayName": "checkout-values",
        "matchArtifact": {"name": "values/checkout/values.yaml", "type": "github/file"},
        "defaultArtifact": {
            "name": "values/checkout/values.yaml",
            "reference": "https://git.example.com/api/v3/repos/shop/deploy-values/contents/values/checkout/values.yaml",
            "type": "github/file",
            "version": "${parameters['valuesBranch'] ?: 'main'}",
        },
        "useDefaultArtifact": True,
        "usePriorArtifact": False,
    }


def baked_artifact(artifact_id: str = BAKED, name: str = "checkout-baked") -> dict[str, Any]:
    return {
        "id": artifact_id,
        "displayName": name,
        "matchArtifact": {"kind": "base64", "name": name, "type": "embedded/base64"},
        "useDefaultArtifact": False,
        "usePriorArtifact": False,
    }


def deployment(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "payments", "labels": {"app": "checkout"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {
                    "containers": [{"name": "checkout", "image": image, "ports": [{"containerPort": 8080}]}]
                },
            },
        },
    }


def stage(ref_id: str, kind: str, name: str, *after: str, **fields: Any) -> dict[str, Any]:
    return {"refId": ref_id, "type": kind, "name": name, "requisiteStageRefIds": list(after), **fields}


def helm_bake_and_deploy() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Deploy to staging",
        "index": 0,
        "keepWaitingPipelines": False,
        "limitConcurrent": True,
        "spelEvaluator": "v4",
        "lastModifiedBy": "alice@example.com",
        "updateTs": "1714060800000",
        "parameterConfig": [
            {
                "name": "valuesBranch",
                "label": "Values branch",
                "default": "main",
                "required": True,
                "pinned": False,
            },
        ],
        "expectedArtifacts": [chart_artifact(), values_artifact()],
        "triggers": [
            {
                "type": "git",
                "source": "github",
                "project": "shop",
                "slug": "checkout-service",
                "branch": "main",
                "enabled": True,
                "expectedArtifactIds": [VALUES],
            }
        ],
        "stages": [
            stage(
                "1",
                "bakeManifest",
                "Bake chart",
                templateRenderer="HELM3",
                outputName="checkout",
                namespace="payments",
                inputArtifacts=[{"id": CHART, "account": "harbor"}, {"id": VALUES, "account": "git-bot"}],
                overrides={"image.tag": "${trigger['hash'] ?: 'latest'}", "replicaCount": 2},
                evaluateOverrideExpressions=False,
                rawOverrides=False,
                expectedArtifacts=[baked_artifact()],
            ),
            stage(
                "2",
                "deployManifest",
                "Deploy",
                "1",
                account="k8s-staging",
                cloudProvider="kubernetes",
                source="artifact",
                manifestArtifactId=BAKED,
                manifestArtifactAccount="embedded-artifact",
                requiredArtifactIds=[VALUES],
                moniker={"app": APP},
                skipExpressionEvaluation=False,
                trafficManagement={"enabled": False, "options": {"enableTraffic": False, "services": []}},
            ),
        ],
    }


def judgment_gate() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Promote to production",
        "keepWaitingPipelines": False,
        "limitConcurrent": True,
        "triggers": [],
        "stages": [
            stage(
                "judge",
                "manualJudgment",
                "Approve production",
                failPipeline=True,
                instructions="Check the staging dashboards, then choose.",
                judgmentInputs=[{"value": "Deploy"}, {"value": "Skip"}],
                notifications=[
                    {
                        "type": "slack",
                        "address": "checkout-oncall",
                        "level": "stage",
                        "when": ["manualJudgment"],
                    }
                ],
                sendNotifications=True,
                stageTimeoutMs=86_400_000,
            ),
            stage(
                "deploy",
                "deployManifest",
                "Deploy to production",
                "judge",
                stageEnabled={
                    "type": "expression",
                    "expression": "${#judgment('Approve production') == 'Deploy'}",
                },
                account="k8s-prod",
                cloudProvider="kubernetes",
                source="text",
                manifests=[
                    deployment(
                        "registry.example.com/shop/checkout:${#stage('Approve production')['context']['tag'] ?: 'stable'}"
                    )
                ],
                moniker={"app": APP},
            ),
            stage(
                "note",
                "wait",
                "Note the skip",
                "judge",
                stageEnabled={
                    "type": "expression",
                    "expression": '${#judgment("Approve production") != "Deploy"}',
                },
                waitTime=1,
            ),
        ],
    }


def find_artifact_legacy() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Redeploy last good image",
        "triggers": [],
        "stages": [
            stage(
                "1",
                "findArtifactFromExecution",
                "Find image",
                application=APP,
                pipeline=UPSTREAM,
                executionOptions={"successful": True},
                expectedArtifact={
                    "id": IMAGE,
                    "displayName": "checkout-image",
                    "matchArtifact": {"name": "registry.example.com/shop/checkout", "type": "docker/image"},
                    "defaultArtifact": {},
                    "useDefaultArtifact": False,
                },
            ),
            stage(
                "2",
                "deployManifest",
                "Redeploy",
                "1",
                account="k8s-prod",
                cloudProvider="kubernetes",
                source="text",
                manifests=[deployment("registry.example.com/shop/checkout")],
                requiredArtifactIds=[IMAGE],
                moniker={"app": APP},
            ),
        ],
    }


def legacy_linear() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Old linear deploy",
        "parallel": False,
        "triggers": [
            {"type": "jenkins", "master": "jenkins-main", "job": "checkout/build", "enabled": False}
        ],
        "stages": [
            {"type": "wait", "name": "Settle", "waitTime": 30},
            {
                "type": "deploy",
                "name": "Deploy classic",
                "clusters": [
                    {
                        "application": APP,
                        "stack": "prod",
                        "strategy": "redblack",
                        "provider": "aws",
                        "account": "aws-prod",
                        "capacity": {"min": 2, "max": 4, "desired": 2},
                        "availabilityZones": {"us-east-1": ["us-east-1a", "us-east-1b"]},
                        "instanceType": "m5.large",
                        "maxRemainingAsgs": 2,
                    }
                ],
            },
            {
                "type": "checkPreconditions",
                "name": "Verify",
                "preconditions": [
                    {
                        "type": "expression",
                        "context": {
                            "expression": "${#stage('Deploy classic')['status'].toString() == 'SUCCEEDED'}"
                        },
                        "failPipeline": True,
                    }
                ],
            },
        ],
    }


def cron_job() -> dict[str, Any]:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "checkout-reindex-", "namespace": "payments"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "reindex",
                            "image": "registry.example.com/shop/tools:2.3.1",
                            "args": [
                                "sh",
                                "-c",
                                'set -- a b c; echo "reindexing ${#} shards, ${#FILES[@]} files"',
                            ],
                        }
                    ],
                }
            },
        },
    }
    return {
        "application": APP,
        "name": "Nightly reindex",
        "limitConcurrent": True,
        "notifications": [
            {
                "type": "email",
                "address": "payments@example.com",
                "level": "pipeline",
                "when": ["pipeline.failed"],
            }
        ],
        "triggers": [
            {
                "type": "cron",
                "cronExpression": "0 0 2 ? * MON-FRI *",
                "enabled": True,
                "id": "b1c2d3e4-0000-4000-8000-00000000c401",
            }
        ],
        "stages": [
            stage(
                "1",
                "runJobManifest",
                "Reindex",
                account="k8s-prod",
                cloudProvider="kubernetes",
                application=APP,
                manifest=job,
                consumeArtifactSource="none",
                propertyFile="reindex",
            )
        ],
    }


def docker_triggered() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Deploy pushed image",
        "triggers": [
            {
                "type": "docker",
                "account": "harbor",
                "organization": "shop",
                "registry": "registry.example.com",
                "repository": "shop/checkout",
                "tag": "^v\\d+\\.\\d+\\.\\d+$",
                "enabled": True,
            }
        ],
        "stages": [
            stage(
                "1",
                "deployManifest",
                "Deploy text manifest",
                account="k8s-staging",
                cloudProvider="kubernetes",
                source="text",
                # left behind when someone switched the source from artifact to text: Orca ignores it
                manifestArtifactId="0f9e8d7c-dead-4bee-8f00-000000000000",
                manifestArtifactAccount="embedded-artifact",
                manifests=[deployment("registry.example.com/shop/checkout:${trigger['tag']}")],
                moniker={"app": APP},
            )
        ],
    }


def jenkins_ci() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Build and test",
        "triggers": [
            {
                "type": "jenkins",
                "master": "jenkins-main",
                "job": "checkout/main",
                "propertyFile": "build.properties",
                "enabled": True,
                "id": "b1c2d3e4-0000-4000-8000-00000000a101",
            }
        ],
        "stages": [
            stage(
                "1",
                "jenkins",
                "Integration tests",
                master="jenkins-main",
                job="checkout/integration",
                parameters={
                    "COMMIT": "${trigger['buildInfo']['scm'][0]['sha1']}",
                    "VERSION": "${trigger.properties['version']}",
                },
                markUnstableAsSuccessful=False,
                waitForCompletion=True,
            ),
            stage(
                "2",
                "checkPreconditions",
                "Tests passed",
                "1",
                preconditions=[
                    {
                        "type": "expression",
                        "context": {
                            "expression": "${#stage('Integration tests')['context']['buildInfo']['result'] == 'SUCCESS'}"
                        },
                        "failPipeline": True,
                    }
                ],
            ),
        ],
    }


def webhook_flow() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Release from webhook",
        "triggers": [
            {
                "type": "webhook",
                "source": "checkout-release",
                "enabled": True,
                "payloadConstraints": {"action": "released", "repository.name": "checkout-service"},
            }
        ],
        "stages": [
            stage(
                "1",
                "webhook",
                "Open change ticket",
                url="https://tickets.example.com/api/changes",
                method="POST",
                customHeaders={"Content-Type": "application/json"},
                payload={
                    "summary": "Release ${trigger['payload']['release']['tag_name']}",
                    "details": "${#toJson(trigger['payload'])}",
                },
                waitForCompletion=True,
                statusUrlResolution="getMethod",
                statusJsonPath="$.status",
                successStatuses="APPROVED",
                canceledStatuses="REJECTED",
                terminalStatuses="FAILED",
            ),
            stage(
                "2",
                "evaluateVariables",
                "Remember the ticket",
                "1",
                variables=[
                    {
                        "key": "ticket",
                        "value": "${ #stage('Open change ticket')['context']['webhook']['body']['id'] }",
                    }
                ],
            ),
        ],
    }


def pubsub_flow() -> dict[str, Any]:
    gcs = {
        "id": GCS_MANIFEST,
        "displayName": "manifest-in-gcs",
        "matchArtifact": {"type": "gcs/object", "name": "gs://shop-manifests/checkout/.*\\.yaml"},
        "useDefaultArtifact": False,
        "usePriorArtifact": True,
    }
    return {
        "application": APP,
        "name": "Deploy on upload",
        "expectedArtifacts": [gcs],
        "triggers": [
            {
                "type": "pubsub",
                "pubsubSystem": "google",
                "subscriptionName": "checkout-manifests",
                "enabled": True,
                "expectedArtifactIds": [GCS_MANIFEST],
                "attributeConstraints": {"eventType": "OBJECT_FINALIZE"},
                "payloadConstraints": {},
            }
        ],
        "stages": [
            stage(
                "1",
                "deployManifest",
                "Deploy uploaded manifest",
                account="k8s-staging",
                cloudProvider="kubernetes",
                source="artifact",
                manifestArtifactId=GCS_MANIFEST,
                manifestArtifactAccount="gcs-reader",
                moniker={"app": APP},
                skipExpressionEvaluation=True,
            )
        ],
    }


def pipeline_triggered() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Smoke test after deploy",
        "triggers": [
            {
                "type": "pipeline",
                "application": APP,
                "pipeline": UPSTREAM,
                "status": ["successful"],
                "enabled": True,
            }
        ],
        "stages": [
            stage(
                "1",
                "pipeline",
                "Run smoke tests",
                application="qa-tools",
                pipeline="1a2b3c4d-0000-4000-8000-0000000000aa",
                pipelineParameters={"tag": "${trigger['parentExecution']['trigger']['tag']}", "target": APP},
                waitForCompletion=True,
                failPipeline=True,
            )
        ],
    }


def parameters_and_variables() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Configure environment",
        "parameterConfig": [
            {
                "name": "env",
                "label": "Environment",
                "required": True,
                "default": "dev",
                "hasOptions": True,
                "options": [{"value": "dev"}, {"value": "prod"}],
                "pinned": True,
                "description": "Where to apply the configuration",
            },
            {"name": "branch", "label": "Branch", "required": False, "default": "feature/new-checkout"},
        ],
        "triggers": [],
        "stages": [
            stage(
                "1",
                "evaluateVariables",
                "Derive names",
                variables=[
                    {"key": "slug", "value": "${#alphanumerical(parameters['branch'])}"},
                    {"key": "replicas", "value": "${ {'dev': 1, 'prod': 3}[parameters['env']] }"},
                    {"key": "config", "value": f'${{#readJson(#fromUrl("{ENV_CONFIG}"))}}'},
                    {"key": "all", "value": "${#toJson(parameters)}"},
                    {"key": "self", "value": "${#currentStage()['name']}"},
                ],
            ),
            stage(
                "2",
                "wait",
                "Pause in prod",
                "1",
                stageEnabled={"type": "expression", "expression": "${parameters['env'] == 'prod'}"},
                waitTime="${ {'dev': 0, 'prod': 60}[parameters['env']] }",
            ),
        ],
    }


def templated_v2() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "From the shared template",
        "type": "templatedPipeline",
        "schema": "v2",
        "template": {
            "artifactAccount": "front50ArtifactCredentials",
            "reference": "spinnaker://deploy-service-template",
            "type": "front50/pipelineTemplate",
        },
        "variables": {"namespace": "payments", "replicas": 2, "canary": False},
        "exclude": [],
        "inherit": [],
        "triggers": [],
        "parameterConfig": [],
        "notifications": [],
        "expectedArtifacts": [],
        "stages": [],
    }


def kayenta_canary() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Canary analysis",
        "triggers": [],
        "stages": [
            stage(
                "1",
                "kayentaCanary",
                "Analyse canary",
                analysisType="realTime",
                canaryConfig={
                    "canaryConfigId": "2c4e6a8b-0000-4000-8000-00000000ca01",
                    "metricsAccountName": "prometheus",
                    "storageAccountName": "canary-gcs",
                    "lifetimeDuration": "PT0H30M",
                    "beginCanaryAnalysisAfterMins": "5",
                    "lookbackMins": 0,
                    "scoreThresholds": {"marginal": 75, "pass": 95},
                    "scopes": [
                        {
                            "scopeName": "default",
                            "controlScope": "checkout-baseline",
                            "controlLocation": "payments",
                            "experimentScope": "checkout-canary",
                            "experimentLocation": "payments",
                            "extendedScopeParams": {"resourceType": "k8s_container"},
                            "step": 60,
                        }
                    ],
                },
            ),
            stage(
                "2",
                "patchManifest",
                "Promote canary",
                "1",
                stageEnabled={
                    "type": "expression",
                    "expression": "${#stage('Analyse canary')['context']['canaryScore'] >= 95.0}",
                },
                account="k8s-prod",
                cloudProvider="kubernetes",
                source="text",
                manifestName="deployment checkout",
                location="payments",
                mode="static",
                patchBody=[{"spec": {"replicas": 4}}],
                options={"mergeStrategy": "strategic", "record": True},
            ),
        ],
    }


def kustomize_bake() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Kustomize overlay",
        "expectedArtifacts": [
            {
                "id": KUSTOMIZE_SRC,
                "displayName": "overlay-repo",
                "matchArtifact": {
                    "type": "git/repo",
                    "reference": "https://git.example.com/shop/checkout-deploy.git",
                },
                "defaultArtifact": {
                    "type": "git/repo",
                    "reference": "https://git.example.com/shop/checkout-deploy.git",
                    "version": "main",
                },
                "useDefaultArtifact": True,
            }
        ],
        "triggers": [],
        "stages": [
            stage(
                "1",
                "bakeManifest",
                "Bake overlay",
                templateRenderer="KUSTOMIZE4",
                kustomizeFilePath="overlays/prod/kustomization.yaml",
                inputArtifact={"id": KUSTOMIZE_SRC, "account": "git-bot"},
                expectedArtifacts=[baked_artifact(KUSTOMIZED, "checkout-kustomized")],
            ),
            stage(
                "2",
                "deployManifest",
                "Apply overlay",
                "1",
                account="k8s-prod",
                cloudProvider="kubernetes",
                source="artifact",
                manifestArtifactId=KUSTOMIZED,
                moniker={"app": APP},
            ),
        ],
    }


def cloudformation_text() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Queue stack",
        "triggers": [],
        "stages": [
            stage(
                "1",
                "deployCloudFormation",
                "Create queue",
                credentials="aws-prod",
                regions=["us-east-1"],
                stackName="checkout-queue",
                source="text",
                stackArtifactId="7e6d5c4b-dead-4bee-8f00-000000000000",  # Orca reads it only for source: artifact
                templateBody=[
                    {
                        "AWSTemplateFormatVersion": "2010-09-09",
                        "Resources": {
                            "Queue": {
                                "Type": "AWS::SQS::Queue",
                                "Properties": {"QueueName": "checkout-${parameters['env'] ?: 'dev'}"},
                            }
                        },
                    }
                ],
                parameters={},
                capabilities=[],
                isChangeSet=False,
            )
        ],
    }


def cloud_build_trigger() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Cloud Build",
        "triggers": [],
        "stages": [
            stage(
                "1",
                "googleCloudBuild",
                "Run build trigger",
                account="gcb-shop",
                buildDefinitionSource="trigger",
                triggerId="checkout-main",
                repoSource={"branchName": "main"},
                # from before the source was switched to a trigger; Orca reads it only for artifact
                buildDefinitionArtifact={
                    "artifactAccount": "gcs-reader",
                    "artifactId": "6c5b4a39-dead-4bee-8f00-000000000000",
                },
            )
        ],
    }


def notifications_and_roles() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "Locked-down deploy",
        "description": "Only deployers may run this; failures page the on-call.",
        "disabled": False,
        "roles": ["checkout-deployers", "sre"],
        "serviceAccount": "checkout-deployers@managed-service-account",
        "maxConcurrentExecutions": 3,
        "limitConcurrent": False,
        "keepWaitingPipelines": True,
        "notifications": [
            SLACK,
            {
                "type": "email",
                "address": "payments@example.com",
                "cc": "sre@example.com",
                "level": "pipeline",
                "when": ["pipeline.complete", "pipeline.failed"],
            },
            {
                "type": "pubsub",
                "publisherName": "deploy-events",
                "level": "pipeline",
                "when": ["pipeline.starting"],
            },
        ],
        "triggers": [
            {
                "type": "git",
                "source": "gitlab",
                "project": "shop",
                "slug": "checkout-service",
                "branch": "release/.*",
                "enabled": True,
            }
        ],
        "stages": [
            stage(
                "1",
                "wait",
                "Business hours only",
                waitTime=0,
                restrictExecutionDuringTimeWindow=True,
                restrictedExecutionWindow={
                    "days": [2, 3, 4, 5, 6],
                    "whitelist": [{"startHour": 9, "startMin": 0, "endHour": 17, "endMin": 0}],
                    "jitter": {"enabled": False},
                },
            ),
            stage(
                "2",
                "undoRolloutManifest",
                "Roll back on failure",
                "1",
                account="k8s-prod",
                cloudProvider="kubernetes",
                manifestName="deployment checkout",
                location="payments",
                mode="static",
                numRevisionsBack=1,
                stageEnabled={
                    "type": "expression",
                    "expression": "${execution.status.toString() == 'TERMINAL'}",
                },
            ),
        ],
    }


def aws_bake_and_deploy() -> dict[str, Any]:
    return {
        "application": APP,
        "name": "AMI bake and deploy",
        "triggers": [
            {
                "type": "jenkins",
                "master": "jenkins-main",
                "job": "checkout/package",
                "propertyFile": "",
                "enabled": True,
            }
        ],
        "stages": [
            stage(
                "bake",
                "bake",
                "Bake AMI",
                baseOs="jammy",
                baseLabel="release",
                cloudProviderType="aws",
                package="checkout",
                regions=["us-east-1", "eu-west-1"],
                storeType="ebs",
                vmType="hvm",
                user="deploy",
                packageArtifactIds=[],
                extendedAttributes={},
            ),
            stage(
                "deploy",
                "deploy",
                "Deploy AMI",
                "bake",
                clusters=[
                    {
                        "application": APP,
                        "account": "aws-prod",
                        "provider": "aws",
                        "strategy": "redblack",
                        "scaleDown": True,
                        "capacity": {"min": 2, "max": 6, "desired": 3},
                        "availabilityZones": {"us-east-1": ["us-east-1a", "us-east-1c"]},
                        "targetHealthyDeployPercentage": 100,
                        "tags": {"cost-center": "payments"},
                    }
                ],
                completeOtherBranchesThenFail=False,
                continuePipeline=False,
                failPipeline=True,
            ),
        ],
    }


def go_template_text() -> dict[str, Any]:
    rules = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "checkout-alerts", "namespace": "payments"},
        "data": {
            "alert.tmpl": '{{ define "checkout.title" }}[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}{{ end }}',
            "rules.yaml": "summary: 'Instance {{ $labels.instance }} is down'\n{# not a comment to Go #}\n",
        },
    }
    return {
        "application": APP,
        "name": "Alert templates",
        "triggers": [],
        "stages": [
            stage(
                "1",
                "deployManifest",
                "Apply alert templates",
                account="k8s-prod",
                cloudProvider="kubernetes",
                source="text",
                manifests=[rules],
                moniker={"app": APP},
            ),
        ],
    }


CORPUS = {
    "helm-bake-deploy": helm_bake_and_deploy,
    "judgment-gate": judgment_gate,
    "find-artifact-legacy": find_artifact_legacy,
    "legacy-linear": legacy_linear,
    "cron-job": cron_job,
    "docker-triggered": docker_triggered,
    "jenkins-ci": jenkins_ci,
    "webhook-flow": webhook_flow,
    "pubsub-flow": pubsub_flow,
    "pipeline-triggered": pipeline_triggered,
    "parameters": parameters_and_variables,
    "templated-v2": templated_v2,
    "kayenta-canary": kayenta_canary,
    "kustomize-bake": kustomize_bake,
    "cloudformation-text": cloudformation_text,
    "cloud-build-trigger": cloud_build_trigger,
    "notifications-roles": notifications_and_roles,
    "aws-bake-deploy": aws_bake_and_deploy,
    # Jinja-like text that is not SpEL (Go templates, a `{#`): pasted inside {% raw %}
    "go-template-text": go_template_text,
}
NEEDS_RAW = frozenset({"go-template-text"})
FORMS = ("json", "yaml")


def pasted(name: str, form: str) -> str:
    """The pipeline as a person pastes it into a template: Deck's JSON, or that JSON as YAML."""
    pipeline = CORPUS[name]()
    if form == "json":
        text = json.dumps(pipeline, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(pipeline, sort_keys=False, allow_unicode=True, width=10_000)
    return "{% raw %}\n" + text + "{% endraw %}\n" if name in NEEDS_RAW else text


@pytest.fixture(scope="module")
def renderer_and_catalog(make_project: MakeProject, tmp_path_factory: pytest.TempPathFactory) -> Any:
    templates = {f"{name}-{form}": pasted(name, form) for name in CORPUS for form in FORMS}
    service = {"stacks": {"dev": {"pipelines": sorted(templates)}}}
    project = make_project(tmp_path_factory.mktemp("corpus"), services={APP: service}, templates=templates)
    catalog = project.load()
    assert catalog.errors == []
    return Renderer(project.templates_dir, catalog), catalog


def differences(before: Any, after: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(kind, path) of every difference: added, removed, or changed (a value or its JSON type)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else key
            if key not in after:
                yield "removed", sub
            elif key not in before:
                yield "added", sub
            else:
                yield from differences(before[key], after[key], sub)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            yield from differences(b, a, f"{path}[{index}]")
    elif type(before) is not type(after) or before != after:
        yield "changed", path


def added_ids(pipeline: dict[str, Any], pipeline_id: str) -> dict[str, str]:
    """What pipeline-sync may add to a pasted pipeline: its id, and the ids triggers and artifacts lack."""
    added = {"id": pipeline_id}
    for index, trigger in enumerate(pipeline.get("triggers", [])):
        if "id" not in trigger:
            added[f"triggers[{index}].id"] = trigger_id_for(pipeline_id, index, trigger["type"])
    artifacts = [(f"expectedArtifacts[{i}]", a) for i, a in enumerate(pipeline.get("expectedArtifacts", []))]
    for s_index, stage in enumerate(pipeline["stages"]):
        base = f"stages[{s_index}]"
        artifacts += [
            (f"{base}.expectedArtifacts[{i}]", a) for i, a in enumerate(stage.get("expectedArtifacts", []))
        ]
        if "expectedArtifact" in stage:
            artifacts.append((f"{base}.expectedArtifact", stage["expectedArtifact"]))
    for where, artifact in artifacts:
        if "id" not in artifact:
            added[f"{where}.id"] = artifact_id_for(pipeline_id, artifact["displayName"])
    return added


def value_at(document: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        document = document[int(part[1:-1])] if part.startswith("[") else document[part]
    return document


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_pasted_pipeline_renders_unchanged_but_for_ids_and_validates(
    renderer_and_catalog: Any, name: str, form: str
) -> None:
    renderer, catalog = renderer_and_catalog
    key = f"{APP}/dev/{name}-{form}"
    rendered = renderer.render(catalog.targets[key])
    original = CORPUS[name]()
    expected = added_ids(original, pipeline_id_for(key))
    assert sorted(differences(original, rendered.document)) == sorted(("added", path) for path in expected)
    assert {path: value_at(rendered.document, path) for path in expected} == expected
    assert json.loads(rendered.canonical) == rendered.document
    assert validate_pipeline(key, rendered.document) == []


def test_the_corpus_covers_the_shapes_it_claims() -> None:
    pipelines = [factory() for factory in CORPUS.values()]
    stages = [s for p in pipelines for s in p["stages"]]
    stage_types = {s["type"] for s in stages}
    assert {
        "bakeManifest",
        "deployManifest",
        "manualJudgment",
        "findArtifactFromExecution",
        "kayentaCanary",
        "runJobManifest",
        "patchManifest",
        "pipeline",
        "webhook",
        "evaluateVariables",
        "deployCloudFormation",
        "googleCloudBuild",
    } <= stage_types
    assert {t["type"] for p in pipelines for t in p["triggers"]} >= {
        "pipeline",
        "cron",
        "docker",
        "git",
        "jenkins",
        "webhook",
        "pubsub",
    }
    text = json.dumps(pipelines)
    for helper in (
        "${#stage(",
        "${#judgment(",
        "${#toJson(",
        "#fromUrl(",
        "${#alphanumerical(",
        "${#currentStage(",
    ):
        assert helper in text
    assert any("refId" not in s for s in stages)  # a legacy linear pipeline
    assert any("expectedArtifact" in s for s in stages)  # the singular, legacy declaration
    assert any(p.get("type") == "templatedPipeline" and p.get("schema") == "v2" for p in pipelines)
    assert any(p.get("notifications") for p in pipelines) and any(p.get("parameterConfig") for p in pipelines)
    assert any(
        "${#judgment(" in s.get("stageEnabled", {}).get("expression", "") for s in stages
    )  # a judgment feeding a later stage's condition
