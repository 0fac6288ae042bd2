"""Translations of the customer messages, keyed by their English message ids.

The ids are the strings in ``templates/customer/`` (``_("...")``) and those marked in
``customer_messages.py``; tests check that every id has a translation in every language here
and that translations use no placeholder the id lacks. A translation may leave a placeholder
out (German names no item in "We chased the team handling your %(item)s").

French uses a no-break space before ``:`` and ``?``; SMS turn it into a plain space.
"""

from __future__ import annotations

NBSP = "\u00a0"

DE = {
    # item words: both neuter, so "Ihr" / "Ihrem" fit either; "Gegenstand" works in these cases too
    "bag": "Gepäckstück",
    "parcel": "Paket",
    "item": "Gegenstand",
    # times
    "at %(time)s": "um %(time)s",
    "on %(weekday)s at %(time)s": "am %(weekday)s um %(time)s",
    "on %(date)s at %(time)s": "am %(date)s um %(time)s",
    # sentences
    "Hello %(name)s,": "Hallo %(name)s,",
    "Hello,": "Guten Tag,",
    "We are waiting on %(party)s and chased them %(when)s.": (
        "Wir warten auf eine Rückmeldung von %(party)s und haben %(when)s nachgehakt."
    ),
    "We are waiting on %(party)s and have chased them.": (
        "Wir warten auf eine Rückmeldung von %(party)s und haben dort nachgehakt."
    ),
    "We chased the team handling your %(item)s %(when)s.": "Wir haben %(when)s beim zuständigen Team nachgehakt.",
    "We have chased the team handling your %(item)s.": "Wir haben beim zuständigen Team nachgehakt.",
    "We have opened a case for your %(item)s and will keep you posted.": (
        "Wir haben einen Vorgang zu Ihrem %(item)s angelegt und halten Sie auf dem Laufenden."
    ),
    "News about your %(item)s: %(status)s.": "Neues zu Ihrem %(item)s: %(status)s.",
    "Sorry for the wait.": "Entschuldigen Sie bitte die Wartezeit.",
    "We are sorry that you have had to wait.": "Es tut uns leid, dass Sie warten müssen.",
    "Your case has been resolved.": "Ihr Vorgang ist abgeschlossen.",
    "We are very sorry: your %(item)s has not been found within 21 days and is now treated as lost. "
    "You can claim compensation.": (
        "Es tut uns sehr leid: Ihr %(item)s wurde innerhalb von 21 Tagen nicht gefunden und gilt jetzt als "
        "verloren. Sie können eine Entschädigung beantragen."
    ),
    "We are very sorry: your %(item)s has not been found in time and is now treated as lost. "
    "You can claim compensation.": (
        "Es tut uns sehr leid: Ihr %(item)s wurde nicht rechtzeitig gefunden und gilt jetzt als verloren. "
        "Sie können eine Entschädigung beantragen."
    ),
    "Everyone involved works from this one case, and we will tell you as soon as there is news, "
    "so there is no need to call.": (
        "Alle Beteiligten arbeiten mit diesem einen Vorgang, und wir melden uns, sobald es Neuigkeiten gibt. "
        "Sie müssen also nicht anrufen."
    ),
    "We have also passed your case to our complaint department, which is following it up.": (
        "Außerdem haben wir Ihren Vorgang an unsere Beschwerdeabteilung übergeben, die sich darum kümmert."
    ),
    "Please tell us whether you are satisfied with the outcome. If something is still not right, "
    "say so on the same page and we will look into it.": (
        "Bitte sagen Sie uns, ob Sie mit dem Ergebnis zufrieden sind. Wenn noch etwas nicht stimmt, teilen Sie "
        "uns das auf derselben Seite mit, und wir kümmern uns darum."
    ),
    "Follow the link below to see how to make your claim.": (
        "Über den Link unten erfahren Sie, wie Sie Ihre Entschädigung beantragen."
    ),
    "Tell us if you are satisfied": "Sagen Sie uns, ob Sie zufrieden sind",
    "See how to claim": "So beantragen Sie eine Entschädigung",
    "See the current status of case %(ref)s": "Aktuellen Stand von Vorgang %(ref)s ansehen",
    "Handled by": "Zuständig",
    "Held by": "Derzeit bei",
    "Resolution:": "Lösung:",
    "Message from the team handling your case:": "Nachricht des zuständigen Teams:",
    "Status": "Status",
    "Next update due": "Nächste Rückmeldung spätestens",
    "Or copy this address into your browser:": "Oder kopieren Sie diese Adresse in Ihren Browser:",
    "Kind regards,": "Freundliche Grüße",
    "The %(brand)s team": "Ihr %(brand)s-Team",
    "Case %(ref)s. You can reply to this email to write to us.": (
        "Vorgang %(ref)s. Sie können auf diese E-Mail antworten, um uns zu schreiben."
    ),
    # subjects
    "We have opened case %(ref)s for your %(item)s": "Vorgang %(ref)s zu Ihrem %(item)s ist angelegt",
    "News about your %(item)s (%(ref)s): %(status)s": "Neues zu Ihrem %(item)s (%(ref)s): %(status)s",
    "Sorry for the wait: we have chased %(party)s (%(ref)s)": (
        "Entschuldigen Sie die Wartezeit: Wir haben bei %(party)s nachgehakt (%(ref)s)"
    ),
    "Sorry for the wait: we are chasing an update (%(ref)s)": "Entschuldigen Sie die Wartezeit: Wir haken nach (%(ref)s)",
    "Your case %(ref)s has been resolved: are you satisfied?": "Ihr Vorgang %(ref)s ist abgeschlossen: Sind Sie zufrieden?",
    "Your %(item)s (%(ref)s) is now treated as lost: how to claim": (
        "Ihr %(item)s (%(ref)s) gilt als verloren: So beantragen Sie eine Entschädigung"
    ),
    # short lines
    "%(label)s: %(value)s": "%(label)s: %(value)s",
    "%(brand)s %(ref)s:": "%(brand)s %(ref)s:",
    "Status: %(status)s.": "Status: %(status)s.",
    "Handled by %(holder)s.": "Zuständig: %(holder)s.",
    "Held by %(holder)s.": "Derzeit bei %(holder)s.",
    "Next update due %(when)s.": "Nächste Rückmeldung spätestens %(when)s.",
    "Track it here: %(url)s": "Hier jederzeit verfolgen: %(url)s",
    "Please tell us if you are satisfied: %(url)s": "Bitte sagen Sie uns, ob Sie zufrieden sind: %(url)s",
    "How to claim: %(url)s": "So beantragen Sie eine Entschädigung: %(url)s",
    "Details: %(url)s": "Details: %(url)s",
}

FR = {
    # item words: both masculine ("votre", "retrouvé", "perdu")
    "bag": "bagage",
    "parcel": "colis",
    "item": "objet",
    "at %(time)s": "à %(time)s",
    "on %(weekday)s at %(time)s": "%(weekday)s à %(time)s",
    "on %(date)s at %(time)s": "le %(date)s à %(time)s",
    "Hello %(name)s,": "Bonjour %(name)s,",
    "Hello,": "Bonjour,",
    "We are waiting on %(party)s and chased them %(when)s.": (
        "Nous attendons un retour de %(party)s et lui avons envoyé une relance %(when)s."
    ),
    "We are waiting on %(party)s and have chased them.": (
        "Nous attendons un retour de %(party)s et lui avons envoyé une relance."
    ),
    "We chased the team handling your %(item)s %(when)s.": (
        "Nous avons relancé l'équipe en charge de votre %(item)s %(when)s."
    ),
    "We have chased the team handling your %(item)s.": "Nous avons relancé l'équipe en charge de votre %(item)s.",
    "We have opened a case for your %(item)s and will keep you posted.": (
        "Nous avons ouvert un dossier pour votre %(item)s et vous tiendrons au courant."
    ),
    "News about your %(item)s: %(status)s.": f"Du nouveau pour votre %(item)s{NBSP}: %(status)s.",
    "Sorry for the wait.": "Toutes nos excuses pour l'attente.",
    "We are sorry that you have had to wait.": "Nous sommes désolés de vous faire attendre.",
    "Your case has been resolved.": "Votre dossier est résolu.",
    "We are very sorry: your %(item)s has not been found within 21 days and is now treated as lost. "
    "You can claim compensation.": (
        f"Nous sommes sincèrement désolés{NBSP}: votre %(item)s n'a pas été retrouvé dans un délai de 21 jours "
        "et est désormais considéré comme perdu. Vous pouvez demander une indemnisation."
    ),
    "We are very sorry: your %(item)s has not been found in time and is now treated as lost. "
    "You can claim compensation.": (
        f"Nous sommes sincèrement désolés{NBSP}: votre %(item)s n'a pas été retrouvé dans les délais "
        "et est désormais considéré comme perdu. Vous pouvez demander une indemnisation."
    ),
    "Everyone involved works from this one case, and we will tell you as soon as there is news, "
    "so there is no need to call.": (
        "Toutes les parties concernées travaillent sur ce même dossier, et nous vous écrirons dès qu'il y aura "
        f"du nouveau{NBSP}: inutile de nous appeler."
    ),
    "We have also passed your case to our complaint department, which is following it up.": (
        "Nous avons également transmis votre dossier à notre service réclamations, qui en assure le suivi."
    ),
    "Please tell us whether you are satisfied with the outcome. If something is still not right, "
    "say so on the same page and we will look into it.": (
        "Dites-nous si la solution vous convient. Si quelque chose ne va toujours pas, signalez-le sur la même "
        "page et nous nous en occuperons."
    ),
    "Follow the link below to see how to make your claim.": (
        "Le lien ci-dessous vous explique comment demander votre indemnisation."
    ),
    "Tell us if you are satisfied": "Dites-nous si la solution vous convient",
    "See how to claim": "Demander une indemnisation",
    "See the current status of case %(ref)s": "Voir où en est le dossier %(ref)s",
    "Handled by": "Pris en charge par",
    "Held by": "Actuellement chez",
    "Resolution:": f"Solution{NBSP}:",
    "Message from the team handling your case:": f"Message de l'équipe en charge de votre dossier{NBSP}:",
    "Status": "Statut",
    "Next update due": "Prochaine mise à jour au plus tard",
    "Or copy this address into your browser:": f"Ou copiez cette adresse dans votre navigateur{NBSP}:",
    "Kind regards,": "Bien cordialement,",
    "The %(brand)s team": "L'équipe %(brand)s",
    "Case %(ref)s. You can reply to this email to write to us.": (
        "Dossier %(ref)s. Vous pouvez répondre à cet e-mail pour nous écrire."
    ),
    "We have opened case %(ref)s for your %(item)s": "Dossier %(ref)s ouvert pour votre %(item)s",
    "News about your %(item)s (%(ref)s): %(status)s": f"Du nouveau pour votre %(item)s (%(ref)s){NBSP}: %(status)s",
    "Sorry for the wait: we have chased %(party)s (%(ref)s)": (
        f"Toutes nos excuses pour l'attente{NBSP}: nous avons relancé %(party)s (%(ref)s)"
    ),
    "Sorry for the wait: we are chasing an update (%(ref)s)": (
        f"Toutes nos excuses pour l'attente{NBSP}: nous relançons votre dossier (%(ref)s)"
    ),
    "Your case %(ref)s has been resolved: are you satisfied?": (
        f"Votre dossier %(ref)s est résolu{NBSP}: la solution vous convient-elle{NBSP}?"
    ),
    "Your %(item)s (%(ref)s) is now treated as lost: how to claim": (
        f"Votre %(item)s (%(ref)s) est considéré comme perdu{NBSP}: comment demander une indemnisation"
    ),
    "%(label)s: %(value)s": f"%(label)s{NBSP}: %(value)s",
    "%(brand)s %(ref)s:": f"%(brand)s %(ref)s{NBSP}:",
    "Status: %(status)s.": f"Statut{NBSP}: %(status)s.",
    "Handled by %(holder)s.": "Pris en charge par %(holder)s.",
    "Held by %(holder)s.": "Actuellement chez %(holder)s.",
    "Next update due %(when)s.": "Prochaine mise à jour au plus tard %(when)s.",
    "Track it here: %(url)s": f"Suivez votre dossier ici{NBSP}: %(url)s",
    "Please tell us if you are satisfied: %(url)s": f"Dites-nous si la solution vous convient{NBSP}: %(url)s",
    "How to claim: %(url)s": f"Pour demander une indemnisation{NBSP}: %(url)s",
    "Details: %(url)s": f"Détails{NBSP}: %(url)s",
}

ES = {
    # item words: both masculine ("su", "perdido")
    "bag": "equipaje",
    "parcel": "paquete",
    "item": "artículo",
    "at %(time)s": "a las %(time)s",
    "on %(weekday)s at %(time)s": "el %(weekday)s a las %(time)s",
    "on %(date)s at %(time)s": "el %(date)s a las %(time)s",
    "Hello %(name)s,": "Hola, %(name)s:",
    "Hello,": "Hola:",
    "We are waiting on %(party)s and chased them %(when)s.": (
        "Estamos esperando noticias de %(party)s y les hemos enviado un recordatorio %(when)s."
    ),
    "We are waiting on %(party)s and have chased them.": (
        "Estamos esperando noticias de %(party)s y ya les hemos enviado un recordatorio."
    ),
    "We chased the team handling your %(item)s %(when)s.": (
        "Hemos enviado un recordatorio al equipo que gestiona su %(item)s %(when)s."
    ),
    "We have chased the team handling your %(item)s.": "Hemos enviado un recordatorio al equipo que gestiona su %(item)s.",
    "We have opened a case for your %(item)s and will keep you posted.": (
        "Hemos abierto un caso para su %(item)s y le mantendremos al tanto."
    ),
    "News about your %(item)s: %(status)s.": "Novedades sobre su %(item)s: %(status)s.",
    "Sorry for the wait.": "Sentimos la espera.",
    "We are sorry that you have had to wait.": "Lamentamos que esté teniendo que esperar.",
    "Your case has been resolved.": "Su caso se ha resuelto.",
    "We are very sorry: your %(item)s has not been found within 21 days and is now treated as lost. "
    "You can claim compensation.": (
        "Lo sentimos mucho: su %(item)s no ha aparecido en 21 días y ahora se considera perdido. "
        "Puede solicitar una indemnización."
    ),
    "We are very sorry: your %(item)s has not been found in time and is now treated as lost. "
    "You can claim compensation.": (
        "Lo sentimos mucho: su %(item)s no ha aparecido dentro del plazo y ahora se considera perdido. "
        "Puede solicitar una indemnización."
    ),
    "Everyone involved works from this one case, and we will tell you as soon as there is news, "
    "so there is no need to call.": (
        "Todas las partes implicadas trabajan sobre este mismo caso y le escribiremos en cuanto haya novedades, "
        "así que no hace falta que llame."
    ),
    "We have also passed your case to our complaint department, which is following it up.": (
        "Además, hemos trasladado su caso a nuestro departamento de reclamaciones, que se encarga de su seguimiento."
    ),
    "Please tell us whether you are satisfied with the outcome. If something is still not right, "
    "say so on the same page and we will look into it.": (
        "Díganos si está conforme con el resultado. Si algo sigue sin estar bien, indíquelo en la misma página "
        "y lo revisaremos."
    ),
    "Follow the link below to see how to make your claim.": (
        "En el enlace de abajo le explicamos cómo solicitar su indemnización."
    ),
    "Tell us if you are satisfied": "Díganos si está conforme",
    "See how to claim": "Ver cómo reclamar",
    "See the current status of case %(ref)s": "Ver el estado del caso %(ref)s",
    "Handled by": "Lo gestiona",
    "Held by": "En manos de",
    "Resolution:": "Solución:",
    "Message from the team handling your case:": "Mensaje del equipo que gestiona su caso:",
    "Status": "Estado",
    "Next update due": "Próxima actualización a más tardar",
    "Or copy this address into your browser:": "O copie esta dirección en su navegador:",
    "Kind regards,": "Un saludo,",
    "The %(brand)s team": "El equipo de %(brand)s",
    "Case %(ref)s. You can reply to this email to write to us.": (
        "Caso %(ref)s. Puede responder a este correo para escribirnos."
    ),
    "We have opened case %(ref)s for your %(item)s": "Hemos abierto el caso %(ref)s para su %(item)s",
    "News about your %(item)s (%(ref)s): %(status)s": "Novedades sobre su %(item)s (%(ref)s): %(status)s",
    "Sorry for the wait: we have chased %(party)s (%(ref)s)": (
        "Sentimos la espera: hemos vuelto a contactar con %(party)s (%(ref)s)"
    ),
    "Sorry for the wait: we are chasing an update (%(ref)s)": "Sentimos la espera: estamos reclamando noticias (%(ref)s)",
    "Your case %(ref)s has been resolved: are you satisfied?": "Su caso %(ref)s se ha resuelto: ¿está conforme?",
    "Your %(item)s (%(ref)s) is now treated as lost: how to claim": (
        "Su %(item)s (%(ref)s) se considera perdido: cómo reclamar"
    ),
    "%(label)s: %(value)s": "%(label)s: %(value)s",
    "%(brand)s %(ref)s:": "%(brand)s %(ref)s:",
    "Status: %(status)s.": "Estado: %(status)s.",
    "Handled by %(holder)s.": "Lo gestiona %(holder)s.",
    "Held by %(holder)s.": "En manos de %(holder)s.",
    "Next update due %(when)s.": "Próxima actualización a más tardar %(when)s.",
    "Track it here: %(url)s": "Sígalo aquí: %(url)s",
    "Please tell us if you are satisfied: %(url)s": "Díganos si está conforme: %(url)s",
    "How to claim: %(url)s": "Cómo reclamar: %(url)s",
    "Details: %(url)s": "Detalles: %(url)s",
}

# English is the message ids themselves.
CATALOG: dict[str, dict[str, str]] = {"en": {}, "de": DE, "fr": FR, "es": ES}
