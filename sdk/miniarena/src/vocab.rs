//! Word lists that instances are drawn from: people, places, groups, and the phrases that
//! record values, goals and knowledge articles are composed of.

use rand::seq::IndexedRandom;
use rand::Rng as _;

use crate::pick::Rng;

pub const FIRST_NAMES: &[&str] = &[
    "Abel", "Beth", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Irene", "Jamal", "Kara", "Luis", "Maya", "Nils", "Olga", "Priya", "Quinn", "Rosa",
    "Sven", "Tara", "Umar", "Vera", "Wes", "Xena", "Yusuf", "Zoe", "Ahmed", "Bianca", "Chen", "Dana", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Julia", "Kofi",
    "Lena", "Marco", "Nadia", "Oscar", "Paula", "Rahul", "Sofia", "Tomas", "Uma", "Victor", "Wanda", "Yara", "Zane",
];

pub const LAST_NAMES: &[&str] = &[
    "Anglin",
    "Baker",
    "Castro",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Loo",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quispe",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Underwood",
    "Vargas",
    "Walsh",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Abbott",
    "Bianchi",
    "Chowdhury",
    "Diaz",
    "Evans",
    "Ferreira",
    "Gupta",
    "Hansen",
    "Ibrahim",
    "Johansson",
    "Kim",
    "Lopez",
    "Mensah",
    "Novak",
    "Olsen",
    "Patel",
    "Reyes",
    "Silva",
    "Torres",
    "Ueda",
    "Volkov",
    "Weber",
    "Young",
    "Zimmer",
];

/// IT staff who work incidents (values of "Assigned to").
pub const AGENTS: &[&str] = &[
    "Beth Anglin",
    "David Loo",
    "Fred Luddy",
    "Luke Wilson",
    "Don Goodliffe",
    "Bud Richman",
    "ITIL User",
    "Charlie Whitherspoon",
    "Howard Johnson",
    "Joe Employee",
    "Abel Tuter",
    "Amy Pascal",
];

pub const GROUPS: &[&str] = &["Service Desk", "Hardware", "Software", "Network", "Database", "Help Desk", "Change Management", "Openspace"];

pub const DEPARTMENTS: &[&str] = &[
    "Finance",
    "Human Resources",
    "IT",
    "Legal",
    "Marketing",
    "Operations",
    "Product Management",
    "Sales",
    "Customer Support",
    "Development",
    "Facilities",
    "Procurement",
];

pub const LOCATIONS: &[&str] = &[
    "Amsterdam",
    "Atlanta",
    "Austin",
    "Berlin",
    "Boston",
    "Chicago",
    "Dublin",
    "Frankfurt",
    "Lisbon",
    "London",
    "Madrid",
    "Montreal",
    "Paris",
    "San Diego",
    "Seattle",
    "Singapore",
    "Sydney",
    "Tokyo",
    "Toronto",
    "Warsaw",
];

pub const TITLES: &[&str] = &[
    "Account Executive",
    "Business Analyst",
    "Data Engineer",
    "Designer",
    "Director",
    "Financial Analyst",
    "HR Partner",
    "IT Technician",
    "Legal Counsel",
    "Marketing Manager",
    "Network Engineer",
    "Office Manager",
    "Product Manager",
    "Project Manager",
    "QA Engineer",
    "Recruiter",
    "Sales Engineer",
    "Software Engineer",
    "Support Specialist",
    "System Administrator",
];

const ISSUES: &[&str] = &[
    "Unable to connect to",
    "Cannot log in to",
    "Slow response from",
    "Error message when opening",
    "Crash when starting",
    "No sound from",
    "Intermittent outage of",
    "Password reset needed for",
    "Request access to",
    "Blank screen on",
    "Sync failure in",
    "Certificate warning in",
    "Licence expired for",
    "Cannot print from",
    "Data missing in",
    "Frequent disconnects from",
];

const OBJECTS: &[&str] = &[
    "the VPN",
    "my email client",
    "the printer on floor 3",
    "the shared drive",
    "the SAP portal",
    "the laptop docking station",
    "the conference room display",
    "Microsoft Teams",
    "the HR portal",
    "the expense tool",
    "the Wi-Fi in building B",
    "the CRM",
    "my desk phone",
    "the build server",
    "the payroll app",
    "the second monitor",
    "the intranet",
    "Salesforce",
    "the badge reader",
    "the file sync client",
];

const CONTEXTS: &[&str] = &[
    "since this morning",
    "after the latest update",
    "for the whole team",
    "when working remotely",
    "on the new laptop",
    "every afternoon",
    "after a password change",
    "during video calls",
    "from the Lisbon office",
    "since yesterday",
];

const CHANGE_VERBS: &[&str] = &[
    "Upgrade",
    "Patch",
    "Decommission",
    "Migrate",
    "Replace",
    "Reconfigure",
    "Restart",
    "Expand storage on",
    "Apply security fixes to",
    "Renew certificates on",
];

const SYSTEMS: &[&str] = &[
    "the mail servers",
    "the database cluster",
    "the core switches",
    "the firewall pair",
    "the web front ends",
    "the backup appliance",
    "the HR system",
    "the payroll database",
    "the load balancers",
    "the file servers",
    "the build agents",
    "the VPN gateways",
];

const CHANGE_DETAILS: &[&str] = &[
    "in the Frankfurt data centre",
    "before quarter end",
    "during the weekend window",
    "to the latest vendor release",
    "for the audit",
    "in the Dublin office",
    "in two phases",
    "after the freeze",
];

const SYMPTOMS: &[&str] = &[
    "timeouts",
    "memory leaks",
    "login failures",
    "slow queries",
    "dropped connections",
    "disk space alerts",
    "failed backups",
    "duplicate emails",
    "sync errors",
    "high CPU usage",
];

const SENTENCE_OPENERS: &[&str] = &[
    "User reports that",
    "Several colleagues noticed that",
    "Monitoring shows that",
    "The caller explained that",
    "It appears that",
    "As discussed on the phone,",
];

const SENTENCE_FACTS: &[&str] = &[
    "the problem started after a restart",
    "the issue only affects some users",
    "a workaround is to reboot the device",
    "the error code is 0x80070005",
    "the logs show repeated retries",
    "nothing changed on the client side",
    "it happens several times a day",
    "the vendor has been contacted",
];

/// "Ann Lee"-style display name for index `i` of the FIRST × LAST space.
pub fn person(i: usize) -> String {
    let f = FIRST_NAMES[i % FIRST_NAMES.len()];
    let l = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
    format!("{f} {l}")
}

/// How many distinct [`person`] names there are.
pub fn person_count() -> usize {
    FIRST_NAMES.len() * LAST_NAMES.len()
}

pub fn random_person(rng: &mut Rng) -> String {
    person(rng.random_range(0..person_count()))
}

pub fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or("")
}

pub fn incident_summary(rng: &mut Rng) -> String {
    format!("{} {} {}", pick(rng, ISSUES), pick(rng, OBJECTS), pick(rng, CONTEXTS))
}

pub fn change_summary(rng: &mut Rng) -> String {
    format!("{} {} {}", pick(rng, CHANGE_VERBS), pick(rng, SYSTEMS), pick(rng, CHANGE_DETAILS))
}

pub fn problem_summary(rng: &mut Rng) -> String {
    let system = pick(rng, SYSTEMS).trim_start_matches("the ");
    format!("Recurring {} on {} {}", pick(rng, SYMPTOMS), system, pick(rng, CONTEXTS))
}

pub fn sentence(rng: &mut Rng) -> String {
    format!("{} {}.", pick(rng, SENTENCE_OPENERS), pick(rng, SENTENCE_FACTS))
}

pub fn two_sentences(rng: &mut Rng) -> String {
    let a = sentence(rng);
    let mut b = sentence(rng);
    while b == a {
        b = sentence(rng);
    }
    format!("{a} {b}")
}

pub fn phone(rng: &mut Rng) -> String {
    format!("+1 {}-{}-{:04}", rng.random_range(200..999), rng.random_range(200..999), rng.random_range(0..10000))
}

pub fn serial(rng: &mut Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..10).map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char).collect()
}

pub fn date(rng: &mut Rng) -> String {
    format!("2025-{:02}-{:02} {:02}:00:00", rng.random_range(1..=12), rng.random_range(1..=28), rng.random_range(8..=18))
}

pub fn day(rng: &mut Rng) -> String {
    format!("202{}-{:02}-{:02}", rng.random_range(5..=8), rng.random_range(1..=12), rng.random_range(1..=28))
}

pub fn money(rng: &mut Rng) -> String {
    format!("{}.{:02}", rng.random_range(80..4000), rng.random_range(0..100))
}

/// A short slug for URLs: lowercase alphanumerics and underscores.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}
