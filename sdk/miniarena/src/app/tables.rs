//! The record tables of the simulated instance (incident, change request, problem, user,
//! hardware asset): their field definitions, records, and random record generation.

use rand::Rng as _;

use crate::pick::Rng;
use crate::vocab::{self, AGENTS, DEPARTMENTS, GROUPS, LOCATIONS, TITLES};

/// The tables, in the order of [`TABLES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableId {
    Incident,
    Change,
    Problem,
    User,
    Hardware,
}

impl TableId {
    pub const ALL: [TableId; 5] = [TableId::Incident, TableId::Change, TableId::Problem, TableId::User, TableId::Hardware];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn spec(self) -> &'static TableSpec {
        &TABLES[self.index()]
    }

    /// The table with this ServiceNow name (`incident`, `sys_user`...).
    pub fn from_name(name: &str) -> Option<TableId> {
        TableId::ALL.into_iter().find(|t| t.spec().name == name)
    }
}

/// How a field is edited and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Read-only, set by the system (record numbers).
    Auto,
    /// Read-only, computed from other fields (incident priority); the choices it can take.
    Derived(&'static [&'static str]),
    Text,
    TextArea,
    /// A reference to a person, typed as their name.
    Reference,
    Choice(&'static [&'static str]),
    Checkbox,
}

impl FieldKind {
    /// The values a field can take when they form a closed list.
    pub fn choices(self) -> Option<&'static [&'static str]> {
        match self {
            FieldKind::Choice(c) | FieldKind::Derived(c) => Some(c),
            FieldKind::Checkbox => Some(&["true", "false"]),
            _ => None,
        }
    }

    pub fn editable(self) -> bool {
        !matches!(self, FieldKind::Auto | FieldKind::Derived(_))
    }
}

/// How random values of a field are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gen {
    Number,
    Derived,
    Choice,
    Bool,
    Person,
    Agent,
    IncidentSummary,
    ChangeSummary,
    ProblemSummary,
    Sentences,
    UserId,
    FirstName,
    LastName,
    Title,
    Email,
    Phone,
    Serial,
    AssetTag,
    Money,
    Date,
    Day,
    PoNumber,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub gen: Gen,
    pub required: bool,
    /// 0: the main section; k: the form tab `tabs[k - 1]`.
    pub tab: u8,
    /// Shown as a list column.
    pub column: bool,
    /// May appear in "create a record" goals.
    pub goal: bool,
    /// May appear in list filter goals.
    pub filter: bool,
    /// May appear in list sort goals.
    pub sort: bool,
    /// The value of a new record; `None` for empty (choices then show `-- None --`).
    pub default: Option<&'static str>,
}

impl Field {
    const fn new(name: &'static str, label: &'static str, kind: FieldKind, gen: Gen) -> Field {
        Field { name, label, kind, gen, required: false, tab: 0, column: false, goal: true, filter: false, sort: false, default: None }
    }
    const fn required(mut self) -> Field {
        self.required = true;
        self
    }
    const fn tab(mut self, tab: u8) -> Field {
        self.tab = tab;
        self
    }
    const fn column(mut self) -> Field {
        self.column = true;
        self
    }
    const fn filter(mut self) -> Field {
        self.filter = true;
        self
    }
    const fn sort(mut self) -> Field {
        self.sort = true;
        self
    }
    const fn no_goal(mut self) -> Field {
        self.goal = false;
        self
    }
    const fn default(mut self, v: &'static str) -> Field {
        self.default = Some(v);
        self
    }
}

pub struct TableSpec {
    pub id: TableId,
    /// ServiceNow's table name, used in URLs (`incident` → `incident_list.do`).
    pub name: &'static str,
    pub label: &'static str,
    pub plural: &'static str,
    /// Record number prefix for tables with an `Auto` number (`INC`).
    pub prefix: &'static str,
    pub tabs: &'static [&'static str],
    pub fields: &'static [Field],
}

impl TableSpec {
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn field_by_label(&self, label: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.label == label)
    }

    /// Indices of the fields shown as list columns (the first one links to the record).
    pub fn columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.fields.iter().enumerate().filter(|(_, f)| f.column).map(|(i, _)| i)
    }

    /// Fields offered in the list condition builder.
    pub fn filterable(&self) -> impl Iterator<Item = usize> + '_ {
        self.fields.iter().enumerate().filter(|(_, f)| f.kind != FieldKind::TextArea).map(|(i, _)| i)
    }
}

const IMPACT: &[&str] = &["1 - High", "2 - Medium", "3 - Low"];
const PRIORITY: &[&str] = &["1 - Critical", "2 - High", "3 - Moderate", "4 - Low", "5 - Planning"];

const INCIDENT_FIELDS: &[Field] = &[
    Field::new("number", "Number", FieldKind::Auto, Gen::Number).column().sort().no_goal(),
    Field::new("caller_id", "Caller", FieldKind::Reference, Gen::Person).required().column().filter().sort(),
    Field::new("category", "Category", FieldKind::Choice(&["Inquiry / Help", "Software", "Hardware", "Network", "Database"]), Gen::Choice)
        .default("Inquiry / Help")
        .column()
        .filter()
        .sort(),
    Field::new("contact_type", "Channel", FieldKind::Choice(&["Email", "Phone", "Self-service", "Walk-in", "Chat", "Virtual Agent"]), Gen::Choice).filter(),
    Field::new("state", "State", FieldKind::Choice(&["New", "In Progress", "On Hold", "Resolved", "Closed", "Canceled"]), Gen::Choice)
        .default("New")
        .column()
        .filter()
        .sort(),
    Field::new("impact", "Impact", FieldKind::Choice(IMPACT), Gen::Choice).default("3 - Low").filter().sort(),
    Field::new("urgency", "Urgency", FieldKind::Choice(IMPACT), Gen::Choice).default("3 - Low").filter().sort(),
    Field::new("priority", "Priority", FieldKind::Derived(PRIORITY), Gen::Derived).column().filter().sort().no_goal(),
    Field::new("assignment_group", "Assignment group", FieldKind::Choice(GROUPS), Gen::Choice).column().filter().sort(),
    Field::new("assigned_to", "Assigned to", FieldKind::Reference, Gen::Agent).column().filter().sort(),
    Field::new("short_description", "Short description", FieldKind::Text, Gen::IncidentSummary).required().column().sort(),
    Field::new("description", "Description", FieldKind::TextArea, Gen::Sentences),
    Field::new("work_notes", "Work notes", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new(
        "close_code",
        "Resolution code",
        FieldKind::Choice(&[
            "Solved (Work Around)",
            "Solved (Permanently)",
            "Solved Remotely (Work Around)",
            "Solved Remotely (Permanently)",
            "Not Solved (Not Reproducible)",
            "Not Solved (Too Costly)",
            "Closed/Resolved by Caller",
        ]),
        Gen::Choice,
    )
    .tab(2),
    Field::new("close_notes", "Resolution notes", FieldKind::TextArea, Gen::Sentences).tab(2),
];

const CHANGE_FIELDS: &[Field] = &[
    Field::new("number", "Number", FieldKind::Auto, Gen::Number).column().sort().no_goal(),
    Field::new("requested_by", "Requested by", FieldKind::Reference, Gen::Person).required().column().filter().sort(),
    Field::new(
        "category",
        "Category",
        FieldKind::Choice(&["Hardware", "Software", "Service", "System Software", "Applications Software", "Network", "Telecom", "Documentation", "Other"]),
        Gen::Choice,
    )
    .default("Other")
    .column()
    .filter()
    .sort(),
    Field::new("type", "Type", FieldKind::Choice(&["Standard", "Normal", "Emergency"]), Gen::Choice).default("Normal").column().filter().sort(),
    Field::new("state", "State", FieldKind::Choice(&["New", "Assess", "Authorize", "Scheduled", "Implement", "Review", "Closed", "Canceled"]), Gen::Choice)
        .default("New")
        .column()
        .filter()
        .sort(),
    Field::new("risk", "Risk", FieldKind::Choice(&["High", "Moderate", "Low"]), Gen::Choice).default("Moderate").filter().sort(),
    Field::new("impact", "Impact", FieldKind::Choice(IMPACT), Gen::Choice).default("3 - Low").filter().sort(),
    Field::new("priority", "Priority", FieldKind::Choice(&["1 - Critical", "2 - High", "3 - Moderate", "4 - Low"]), Gen::Choice)
        .default("4 - Low")
        .column()
        .filter()
        .sort(),
    Field::new("assignment_group", "Assignment group", FieldKind::Choice(GROUPS), Gen::Choice).column().filter().sort(),
    Field::new("short_description", "Short description", FieldKind::Text, Gen::ChangeSummary).required().column().sort(),
    Field::new("description", "Description", FieldKind::TextArea, Gen::Sentences),
    Field::new("justification", "Justification", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new("implementation_plan", "Implementation plan", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new("backout_plan", "Backout plan", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new("test_plan", "Test plan", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new("start_date", "Planned start date", FieldKind::Text, Gen::Date).tab(2),
    Field::new("end_date", "Planned end date", FieldKind::Text, Gen::Date).tab(2),
];

const PROBLEM_FIELDS: &[Field] = &[
    Field::new("number", "Number", FieldKind::Auto, Gen::Number).column().sort().no_goal(),
    Field::new("category", "Category", FieldKind::Choice(&["Software", "Hardware", "Network", "Database", "Inquiry / Help"]), Gen::Choice)
        .default("Software")
        .column()
        .filter()
        .sort(),
    Field::new("state", "State", FieldKind::Choice(&["New", "Assess", "Root Cause Analysis", "Fix in Progress", "Resolved", "Closed"]), Gen::Choice)
        .default("New")
        .column()
        .filter()
        .sort(),
    Field::new("impact", "Impact", FieldKind::Choice(IMPACT), Gen::Choice).default("3 - Low").filter().sort(),
    Field::new("urgency", "Urgency", FieldKind::Choice(IMPACT), Gen::Choice).default("3 - Low").filter().sort(),
    Field::new("priority", "Priority", FieldKind::Derived(PRIORITY), Gen::Derived).column().filter().sort().no_goal(),
    Field::new("assignment_group", "Assignment group", FieldKind::Choice(GROUPS), Gen::Choice).column().filter().sort(),
    Field::new("assigned_to", "Assigned to", FieldKind::Reference, Gen::Agent).column().filter().sort(),
    Field::new("short_description", "Problem statement", FieldKind::Text, Gen::ProblemSummary).required().column().sort(),
    Field::new("description", "Description", FieldKind::TextArea, Gen::Sentences),
    Field::new("workaround", "Workaround", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new("cause_notes", "Cause notes", FieldKind::TextArea, Gen::Sentences).tab(1),
    Field::new("fix_notes", "Fix notes", FieldKind::TextArea, Gen::Sentences).tab(1),
];

const USER_FIELDS: &[Field] = &[
    Field::new("user_name", "User ID", FieldKind::Text, Gen::UserId).required().column().sort(),
    Field::new("first_name", "First name", FieldKind::Text, Gen::FirstName).column().sort(),
    Field::new("last_name", "Last name", FieldKind::Text, Gen::LastName).column().sort(),
    Field::new("title", "Title", FieldKind::Text, Gen::Title).column().filter().sort(),
    Field::new("department", "Department", FieldKind::Choice(DEPARTMENTS), Gen::Choice).column().filter().sort(),
    Field::new("email", "Email", FieldKind::Text, Gen::Email).column().sort(),
    Field::new("phone", "Business phone", FieldKind::Text, Gen::Phone),
    Field::new("mobile_phone", "Mobile phone", FieldKind::Text, Gen::Phone),
    Field::new("location", "Location", FieldKind::Choice(LOCATIONS), Gen::Choice).column().filter().sort(),
    Field::new(
        "time_zone",
        "Time zone",
        FieldKind::Choice(&["America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris", "Asia/Kolkata", "Asia/Tokyo", "Australia/Sydney"]),
        Gen::Choice,
    )
    .filter(),
    Field::new("active", "Active", FieldKind::Checkbox, Gen::Bool).default("true").column().filter().sort(),
    Field::new("locked_out", "Locked out", FieldKind::Checkbox, Gen::Bool).default("false").filter(),
    Field::new("password_needs_reset", "Password needs reset", FieldKind::Checkbox, Gen::Bool).default("false"),
];

const HARDWARE_FIELDS: &[Field] = &[
    Field::new("asset_tag", "Asset tag", FieldKind::Text, Gen::AssetTag).required().column().sort(),
    Field::new(
        "model_category",
        "Model category",
        FieldKind::Choice(&["Computer", "Monitor", "Printer", "Network Gear", "Mobile Device", "Server", "Rack"]),
        Gen::Choice,
    )
    .column()
    .filter()
    .sort(),
    Field::new(
        "model",
        "Model",
        FieldKind::Choice(&[
            "Dell Latitude 5440",
            "Apple MacBook Pro 14",
            "Lenovo ThinkPad X1 Carbon",
            "HP EliteDesk 800",
            "Dell UltraSharp U2723QE",
            "LG 27UK850",
            "HP LaserJet M507",
            "Cisco Catalyst 9300",
            "Apple iPhone 15",
            "Samsung Galaxy S24",
            "Dell PowerEdge R760",
            "APC NetShelter SX",
        ]),
        Gen::Choice,
    )
    .column()
    .filter()
    .sort(),
    Field::new("serial_number", "Serial number", FieldKind::Text, Gen::Serial).column().sort(),
    Field::new(
        "install_status",
        "State",
        FieldKind::Choice(&["In use", "On order", "In stock", "In transit", "In maintenance", "Retired", "Missing"]),
        Gen::Choice,
    )
    .default("In stock")
    .column()
    .filter()
    .sort(),
    Field::new("assigned_to", "Assigned to", FieldKind::Reference, Gen::Person).column().filter().sort(),
    Field::new("location", "Location", FieldKind::Choice(LOCATIONS), Gen::Choice).column().filter().sort(),
    Field::new("department", "Department", FieldKind::Choice(DEPARTMENTS), Gen::Choice).filter(),
    Field::new("comments", "Comments", FieldKind::TextArea, Gen::Sentences),
    Field::new("cost", "Cost", FieldKind::Text, Gen::Money).tab(1).sort(),
    Field::new("po_number", "PO number", FieldKind::Text, Gen::PoNumber).tab(1),
    Field::new("warranty_expiration", "Warranty expiration", FieldKind::Text, Gen::Day).tab(1),
];

pub static TABLES: [TableSpec; 5] = [
    TableSpec {
        id: TableId::Incident,
        name: "incident",
        label: "Incident",
        plural: "Incidents",
        prefix: "INC",
        tabs: &["Notes", "Resolution Information"],
        fields: INCIDENT_FIELDS,
    },
    TableSpec {
        id: TableId::Change,
        name: "change_request",
        label: "Change Request",
        plural: "Change Requests",
        prefix: "CHG",
        tabs: &["Planning", "Schedule"],
        fields: CHANGE_FIELDS,
    },
    TableSpec {
        id: TableId::Problem,
        name: "problem",
        label: "Problem",
        plural: "Problems",
        prefix: "PRB",
        tabs: &["Analysis Information"],
        fields: PROBLEM_FIELDS,
    },
    TableSpec { id: TableId::User, name: "sys_user", label: "User", plural: "Users", prefix: "", tabs: &[], fields: USER_FIELDS },
    TableSpec {
        id: TableId::Hardware,
        name: "alm_hardware",
        label: "Hardware Asset",
        plural: "Hardware Assets",
        prefix: "",
        tabs: &["Financial"],
        fields: HARDWARE_FIELDS,
    },
];

/// One record: values by field index (checkboxes hold `"true"` / `"false"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: u32,
    pub values: Vec<String>,
    /// Created during the episode (by the agent).
    pub created: bool,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub id: TableId,
    pub records: Vec<Record>,
    /// The next number to hand out (`INC0010043` → 10043).
    pub next_number: u32,
}

impl Table {
    pub fn spec(&self) -> &'static TableSpec {
        self.id.spec()
    }

    pub fn record(&self, id: u32) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }

    /// The record number the next new record will get (empty for tables without numbers).
    pub fn next_number_text(&self) -> String {
        let spec = self.spec();
        if spec.prefix.is_empty() {
            String::new()
        } else {
            format!("{}{:07}", spec.prefix, self.next_number)
        }
    }

    /// Adds a record made of `values` (numbering it) and returns its id.
    pub fn insert(&mut self, mut values: Vec<String>, created: bool) -> u32 {
        let spec = self.spec();
        for (i, f) in spec.fields.iter().enumerate() {
            if f.kind == FieldKind::Auto {
                values[i] = self.next_number_text();
            }
        }
        derive(spec, &mut values);
        self.next_number += 1;
        let id = self.records.last().map_or(1, |r| r.id + 1);
        self.records.push(Record { id, values, created });
        id
    }

    /// The text shown for a record (its number, or its first column).
    pub fn display(&self, r: &Record) -> String {
        r.values.first().cloned().unwrap_or_default()
    }
}

/// The values of a new record: each field's default (or empty).
pub fn defaults(spec: &TableSpec) -> Vec<String> {
    let mut v: Vec<String> = spec.fields.iter().map(|f| f.default.unwrap_or("").to_string()).collect();
    derive(spec, &mut v);
    v
}

/// Recomputes derived fields: priority from impact × urgency, as ServiceNow does.
pub fn derive(spec: &TableSpec, values: &mut [String]) {
    let (Some(p), Some(i), Some(u)) = (spec.field_index("priority"), spec.field_index("impact"), spec.field_index("urgency")) else {
        return;
    };
    if spec.fields[p].kind.editable() {
        return;
    }
    let level = |s: &str| s.bytes().next().map_or(3, |b| (b.wrapping_sub(b'0')).clamp(1, 3));
    let sum = level(&values[i]) + level(&values[u]);
    values[p] = PRIORITY[(sum - 2) as usize].to_string();
}

/// A random value for field `f` (people drawn from `people`).
pub fn random_value(f: &Field, rng: &mut Rng, people: &[String]) -> String {
    match f.gen {
        Gen::Number | Gen::Derived => String::new(),
        Gen::Choice => f.kind.choices().map_or(String::new(), |c| vocab::pick(rng, c).to_string()),
        Gen::Bool => rng.random_bool(0.5).to_string(),
        Gen::Person => people.get(rng.random_range(0..people.len().max(1))).cloned().unwrap_or_else(|| vocab::random_person(rng)),
        Gen::Agent => vocab::pick(rng, AGENTS).to_string(),
        Gen::IncidentSummary => vocab::incident_summary(rng),
        Gen::ChangeSummary => vocab::change_summary(rng),
        Gen::ProblemSummary => vocab::problem_summary(rng),
        Gen::Sentences => vocab::two_sentences(rng),
        Gen::UserId => format!(
            "{}.{}{}",
            vocab::pick(rng, vocab::FIRST_NAMES).to_lowercase(),
            vocab::pick(rng, vocab::LAST_NAMES).to_lowercase(),
            rng.random_range(1..100)
        ),
        Gen::FirstName => vocab::pick(rng, vocab::FIRST_NAMES).to_string(),
        Gen::LastName => vocab::pick(rng, vocab::LAST_NAMES).to_string(),
        Gen::Title => vocab::pick(rng, TITLES).to_string(),
        Gen::Email => format!("{}.{}@example.com", vocab::pick(rng, vocab::FIRST_NAMES).to_lowercase(), vocab::pick(rng, vocab::LAST_NAMES).to_lowercase()),
        Gen::Phone => vocab::phone(rng),
        Gen::Serial => vocab::serial(rng),
        Gen::AssetTag => format!("P{:07}", rng.random_range(1_000_000..9_999_999)),
        Gen::Money => vocab::money(rng),
        Gen::Date => vocab::date(rng),
        Gen::Day => vocab::day(rng),
        Gen::PoNumber => format!("PO{:07}", rng.random_range(100_000..9_999_999)),
    }
}

/// A random record of table `id` (user records get consistent names and e-mail).
pub fn random_record(id: TableId, rng: &mut Rng, people: &[String]) -> Vec<String> {
    let spec = id.spec();
    let mut v: Vec<String> =
        spec.fields.iter().map(|f| if f.kind == FieldKind::TextArea && rng.random_bool(0.6) { String::new() } else { random_value(f, rng, people) }).collect();
    if id == TableId::User {
        let name = &people[rng.random_range(0..people.len().max(1))];
        let (first, last) = name.split_once(' ').unwrap_or((name, ""));
        let set = |v: &mut Vec<String>, f: &str, s: String| {
            if let Some(i) = spec.field_index(f) {
                v[i] = s;
            }
        };
        set(&mut v, "first_name", first.to_string());
        set(&mut v, "last_name", last.to_string());
        set(&mut v, "user_name", format!("{}.{}", first.to_lowercase(), last.to_lowercase()));
        set(&mut v, "email", format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()));
        set(&mut v, "active", rng.random_bool(0.85).to_string());
    }
    v
}

/// A table of `n` random records.
pub fn random_table(id: TableId, n: usize, rng: &mut Rng, people: &[String]) -> Table {
    let mut t = Table { id, records: Vec::with_capacity(n + 4), next_number: 10001 };
    for _ in 0..n {
        let values = random_record(id, rng, people);
        t.insert(values, false);
    }
    t
}
