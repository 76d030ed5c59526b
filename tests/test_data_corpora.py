"""Corpus readers in every official layout, the registry's errors, and the singer table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from comosvc.audio import save_audio
from comosvc.data.corpora import CORPORA, CorpusError, DatasetSpec, get_reader, read_corpus
from comosvc.data.singers import SingerTable, TooManySingersError
from comosvc.data.synthetic import write_corpus

SR = 24000


def _tone(path, seconds=0.3):
    t = np.arange(int(seconds * SR)) / SR
    save_audio(path, 0.3 * np.sin(2 * np.pi * 220 * t), SR)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_reader_finds_every_file_of_the_official_layout(corpus, tmp_path):
    written = write_corpus(corpus, tmp_path, n_singers=2, files_per_singer=2, seconds=0.3)
    records = read_corpus(corpus, tmp_path)
    assert [(r.singer, r.utterance, r.path) for r in records] == sorted(
        (s, u, p.resolve()) for s, u, p in written
    )
    assert all(r.dataset == corpus for r in records)
    assert len({(r.singer, r.utterance) for r in records}) == len(records)  # ids unique per singer
    assert records == sorted(records)


def test_layout_details(tmp_path):
    # M4Singer: singer is the part before '#', meta.json ignored for listing
    m4 = read_corpus("m4singer", _layout(tmp_path / "m4", ["Alto-1#newboy/0000.wav", "Alto-1#newboy/0001.wav", "Tenor-2#a song/0000.wav"]))
    assert {(r.singer, r.utterance) for r in m4} == {("Alto-1", "newboy#0000"), ("Alto-1", "newboy#0001"), ("Tenor-2", "a song#0000")}
    # OpenSinger: gender + id; the same id in both genders is two singers
    os_ = read_corpus("opensinger", _layout(tmp_path / "os", ["ManRaw/0_x/0_x_0.wav", "WomanRaw/0_y/0_y_3.wav"]))
    assert {(r.singer, r.utterance) for r in os_} == {("Man_0", "x_0"), ("Woman_0", "y_3")}
    # VCTK 0.80: wav48/<spk>/*.wav
    vctk = read_corpus("vctk", _layout(tmp_path / "vctk", ["wav48/p225/p225_001.wav", "wav48/p226/p226_002.wav"]))
    assert {(r.singer, r.utterance) for r in vctk} == {("p225", "p225_001"), ("p226", "p226_002")}
    # SVCC 2023 as the generation script writes it (top-level singers; evaluation/ground_truth left out)
    svcc = read_corpus("svcc", _layout(tmp_path / "svcc", ["IDM1/10001.wav", "CDF1/10001.wav", "evaluation/SM1/30001.wav", "ground_truth/IDM1/30001.wav"]))
    assert {(r.singer, r.utterance) for r in svcc} == {("IDM1", "10001"), ("CDF1", "10001")}
    # VCC 2018
    vcc = read_corpus("svcc", _layout(tmp_path / "vcc", ["vcc2018_training/VCC2SF1/10001.wav", "vcc2018_training/VCC2TM1/10002.wav"]))
    assert {r.singer for r in vcc} == {"VCC2SF1", "VCC2TM1"}
    # Opencpop without segments/: the full songs
    cpop = read_corpus("opencpop", _layout(tmp_path / "cpop", ["wavs/2001.wav"]))
    assert [(r.singer, r.utterance) for r in cpop] == [("female1", "2001")]
    # generic: any depth, any supported suffix, files at the top level are not singers
    gen = read_corpus("generic", _layout(tmp_path / "gen", ["a/x.wav", "a/deep/er/y.flac", "b/z.ogg", "loose.wav", "a/notes.txt"]))
    assert {(r.singer, r.utterance) for r in gen} == {("a", "x"), ("a", "deep/er/y"), ("b", "z")}


def _layout(root, relpaths):
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".txt":
            path.write_text("not audio")
        else:
            _tone(path)
    return root


def test_unknown_corpus_lists_valid_names(tmp_path):
    with pytest.raises(CorpusError) as err:
        get_reader("nus48e")
    for name in CORPORA:
        assert name in str(err.value)
    with pytest.raises(CorpusError, match="m4singer, opencpop, opensinger, svcc, vctk, generic"):
        DatasetSpec.parse(f"popcs={tmp_path}")
    with pytest.raises(CorpusError, match="CORPUS=PATH"):
        DatasetSpec.parse("m4singer")


def test_missing_empty_and_wrong_layout_fail_at_once(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        DatasetSpec.parse(f"vctk={tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="empty"):
        DatasetSpec.parse(f"vctk={tmp_path / 'empty'}")
    _layout(tmp_path / "flat", ["x.wav"])
    spec = DatasetSpec.parse(f"vctk={tmp_path / 'flat'}")
    with pytest.raises(CorpusError, match="wav48_silence_trimmed.*Valid corpora"):
        spec.records()


def test_dataset_rename():
    spec = DatasetSpec.parse("generic:alice-2=.")
    assert (spec.corpus, spec.name) == ("generic", "alice-2")
    with pytest.raises(CorpusError, match="no '_'"):
        DatasetSpec.parse("generic:my_set=.")


def test_singer_table_ids_are_stable(tmp_path):
    table = SingerTable()
    assert table.update(["vctk_p226", "vctk_p225"]) == ["vctk_p225", "vctk_p226"]
    assert table["vctk_p225"] == 0 and table["vctk_p226"] == 1
    table.save(tmp_path)
    again = SingerTable.load(tmp_path)
    # a new dataset that sorts first still gets new ids; old ids never move
    again.update(["m4singer_Alto-1", "vctk_p225"])
    assert again.to_dict() == {"vctk_p225": 0, "vctk_p226": 1, "m4singer_Alto-1": 2}
    assert again.add("m4singer", "Alto-1") == 2
    assert json.loads((tmp_path / "singers.json").read_text()) == {"vctk_p225": 0, "vctk_p226": 1}


def test_singer_table_refuses_too_many(tmp_path):
    table = SingerTable({"a_x": 0, "a_y": 1}, max_speakers=3)
    with pytest.raises(TooManySingersError, match="model.n_speakers=3"):
        table.update(["b_1", "b_2"])
    assert len(table) == 2  # a refused update changes nothing
    table.update(["b_1"])
    with pytest.raises(TooManySingersError):
        SingerTable.load(table.save(tmp_path / "s.json"), max_speakers=2)
    with pytest.raises(ValueError, match="same id"):
        SingerTable({"a": 0, "b": 0})
    with pytest.raises(KeyError, match="Known singers"):
        table["zz"]
    assert SingerTable.load(tmp_path / "absent", missing_ok=True).to_dict() == {}
