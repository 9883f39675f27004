"""The check report's text and notebook HTML."""

import torch

import initlab
from initlab.render import check_html, check_text, check_verdict_lines


def test_the_text_leads_with_the_status_and_lists_each_finding_with_its_fix():
    report = initlab.check(initlab.mlp(depth=6, width=32, input_shape=(16,)), torch.randn(8, 16))  # torch-default
    text = check_text(report)
    assert text == report.text() and text.splitlines()[0].startswith("UNHEALTHY: Check of 6 layer calls")
    assert text.splitlines()[1:1 + len(check_verdict_lines(report))] == ["  " + line for line in
                                                                        check_verdict_lines(report)]
    assert "error: 5 Linear layers use PyTorch's default init" in text and "  fix: kaiming, mode fan_in" in text


def test_the_html_colours_the_status_escapes_the_messages_and_folds_the_layer_table():
    unhealthy = initlab.check(initlab.mlp(depth=6, width=32, input_shape=(16,)), torch.randn(8, 16))
    healthy = initlab.check(initlab.apply_init(initlab.mlp(depth=6, width=32, input_shape=(16,)), "kaiming"),
                            torch.randn(8, 16))
    assert not unhealthy.healthy and healthy.healthy
    page = check_html(unhealthy)
    assert page.startswith("<div><p style='color:#cf222e") and check_html(healthy).startswith(
        "<div><p style='color:#1a7f37")
    assert "<details><summary>6 layer calls</summary>" in page
    assert "&#x27;" in page and "'0'" not in page  # the quotes in messages are escaped
