from tests.conftest import World


async def test_partner_can_post_a_signed_update(world: World) -> None:
    case = await world.open_case()
    response = await world.as_partner(
        "lh", "POST", f"/v1/cases/{case['ref']}/events", json_body={"status": "located", "message": "Found in FRA"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["seq"] == 2
