"""The patient pages' French vocabulary: refusals, trace actions and reasons, document types."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Reason, Refused

__all__ = ["ACTIONS", "MESSAGES", "MODES", "REASONS", "STATUSES", "TYPES_FR", "message",
           "type_fr"]

MESSAGES: dict[str, str] = {
    Reason.LOGIN_FAILED: "INS ou mot de passe incorrect.",
    Reason.CODE_INVALID: "Code incorrect ou expiré. Vérifiez le code reçu, ou recommencez la "
                         "connexion.",
    Reason.LOGIN_LOCKED: "Trop d'échecs : la connexion est bloquée pendant 15 minutes.",
    Reason.DMP_CLOSED: "Votre DMP est fermé : il reste consultable, sans modification.",
    Reason.DMP_NOT_FOUND: "Aucun DMP pour cet INS.",
    Reason.UNKNOWN_DOCUMENT: "Document inconnu.",
    Reason.UNAUTHENTICATED: "Votre session a expiré : reconnectez-vous.",
    Reason.UNKNOWN_PROFESSIONAL: "Ce professionnel n'est pas un médecin de l'annuaire.",
    Reason.VISIBILITY_CONFLICT: "Un document ne peut pas être à la fois masqué et caché.",
    Reason.TOO_LARGE: "Le fichier est trop volumineux.",
    Reason.NOT_FOUND: "Introuvable.",
    Reason.CDA_INVALID: "Le document CDA n'est pas conforme",
    Reason.INS_MISMATCH: "Ce document CDA concerne un autre patient (INS différent)",
    Reason.DOCUMENT_EXISTS: "Ce document est déjà dans votre DMP.",
}

ACTIONS: dict[str, str] = {
    "exists": "Vérification de l'existence du DMP", "create": "Création du DMP",
    "feed": "Ajout d'un document", "find": "Consultation de la liste des documents",
    "retrieve": "Lecture d'un document", "visibility": "Changement de visibilité",
    "delete": "Suppression d'un document", "emergency": "Accès en urgence",
    "traces": "Lecture de l'historique", "patient_login": "Connexion du patient",
    "patient_settings": "Paramètres", "patient_block": "Blocage d'un professionnel",
    "patient_unblock": "Déblocage d'un professionnel",
    "deletion_request": "Demande de suppression", "close": "Fermeture du DMP",
    "patient_code_issued": "Code de connexion affiché au terminal",
}
REASONS: dict[str, str] = {
    "blocked_by_patient": "professionnel bloqué par vous",
    "emergency_opposed": "vous vous êtes opposé à cet accès en urgence",
    "masked_by_patient": "document masqué par vous",
    "hidden_from_patient": "document pas encore visible",
    "consent_missing": "sans votre consentement", "outside_access_matrix":
    "type de document non autorisé pour cette profession",
    "insurer_forbidden": "assureur : toujours refusé",
    "occupational_needs_express_consent": "médecin du travail sans votre autorisation",
    "student_card_refused": "carte d'étudiant", "login_failed": "mot de passe incorrect",
    "code_invalid": "code incorrect", "dmp_closed": "DMP fermé",
}
MODES = {"normal": "", "bris_de_glace": "Bris de glace", "centre_15": "Centre 15 (SAMU)"}
STATUSES = {"available": "Disponible", "deletion_requested": "Suppression demandée",
            "deleted": "Supprimé"}
# Document types (LOINC codes of data/standin_access_matrix.toml) as a French patient reads them.
TYPES_FR = {
    "11488-4": "Compte rendu de consultation", "11490-0": "Lettre de sortie",
    "11502-2": "Compte rendu de biologie", "11528-7": "Compte rendu d'imagerie",
    "15507-7": "Compte rendu de passage aux urgences", "34874-8": "Compte rendu opératoire",
    "57833-6": "Prescription", "29551-9": "Prescription de médicaments",
    "29550-1": "Dispensation", "60593-1": "Dispensation de médicaments",
    "11506-3": "Suivi de soins par un auxiliaire médical", "52521-2": "Prescription de soins",
    "18776-5": "Plan de soins", "47420-5": "Bilan fonctionnel",
    "60591-5": "Synthèse médicale", "87273-9": "Vaccination",
}


def type_fr(type_code: str, type_name: str = "") -> str:
    """A document type in French (the host's name, else its code, when unknown)."""
    return TYPES_FR.get(type_code, type_name or type_code)


def message(refusal: Refused) -> str:
    """What the patient reads for a refusal (the API's own message when no French one)."""
    return MESSAGES.get(refusal.told) or (refusal.message if refusal.told is refusal.reason
                                          else refusal.told.value.replace("_", " "))
