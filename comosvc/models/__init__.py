"""The acoustic model: condition encoder, prior, BiDilConv denoiser, EDM teacher, consistency student."""

from comosvc.models.comosvc import CONDITION_KEYS, ComoSVC, SampleOutput
from comosvc.models.condition import ConditionEncoder
from comosvc.models.consistency import ConsistencyDistiller
from comosvc.models.denoiser import BiDilConv
from comosvc.models.edm import EDM, karras_sigmas
from comosvc.models.folder import read_model_json, read_singer_tables
from comosvc.models.prior import Prior
from comosvc.models.samplers import StudentSampler, TeacherSampler, default_sampler, resolve_sampler

__all__ = [
    "BiDilConv",
    "CONDITION_KEYS",
    "ComoSVC",
    "ConditionEncoder",
    "ConsistencyDistiller",
    "EDM",
    "Prior",
    "SampleOutput",
    "StudentSampler",
    "TeacherSampler",
    "default_sampler",
    "karras_sigmas",
    "read_model_json",
    "read_singer_tables",
    "resolve_sampler",
]
