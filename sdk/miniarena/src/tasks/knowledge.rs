//! `knowledge_base` tasks: search the knowledge base, open the right article among similar
//! ones, and answer a question from it with `send_msg_to_user`. Also makes the articles
//! every instance has (travel policies per city, support contacts per team, approved
//! software versions per platform, how-tos), long enough that prompts need truncation.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng as _;

use super::{base_world, Instance, Reply, Target};
use crate::app::kb::{Article, Block};
use crate::app::{Ctl, Dest, Route, Ui};
use crate::expert::{Plan, PlanCx};
use crate::pick::{self, Pick, Rng};
use crate::size::PageSize;
use crate::vocab::{self, LOCATIONS};

#[derive(Clone, Debug)]
pub(crate) struct KbTarget {
    pub reply: Reply,
    pub article: u16,
    pub title: String,
    /// What the expert searches for.
    pub query: String,
}

impl KbTarget {
    pub fn plan(&self, cx: &mut PlanCx<'_>) -> Plan {
        let title = &self.title;
        match (&cx.session.route, &cx.session.ui) {
            (Route::KbArticle(a), _) if *a == self.article => {
                let why = format!("the article \"{title}\" says");
                let r = &self.reply;
                cx.answer(r.message.clone(), &r.answer, r.decoys.clone(), why)
            }
            (Route::KbArticle(_), _) => cx.click(Ctl::Go(Dest::KbHome), format!("this article is not \"{title}\", which is the one I need")),
            (Route::KbHome | Route::KbSearch(_), Ui::Kb(k)) => {
                if k.results.contains(&self.article) {
                    return cx.click(Ctl::Article(self.article), format!("the results list \"{title}\", which should contain the answer"));
                }
                if k.typed != self.query && !cx.overlooks(Ctl::KbSearchBox) {
                    return cx.fill(Ctl::KbSearchBox, &self.query, format!("searching for \"{}\" should find the article with the answer", self.query));
                }
                let why = format!("the search box holds \"{}\", so I can run the search", k.typed);
                if cx.memory.strategy & 2 == 0 {
                    cx.click(Ctl::KbSearchButton, why)
                } else {
                    cx.press_enter(Ctl::KbSearchBox, why)
                }
            }
            _ => cx.recover(Ctl::KbSearchBox),
        }
    }
}

const TRAVEL_SENTENCES: &[&str] = &[
    "All business travel must be approved by your line manager before booking.",
    "Book flights and hotels through the corporate travel portal.",
    "Economy class is the default for flights shorter than six hours.",
    "Keep all receipts and submit them within 30 days of your return.",
    "Personal expenses such as minibar charges are not reimbursed.",
    "Travel insurance is provided automatically for approved trips.",
    "If a limit is exceeded, add a justification to the expense report.",
    "Rail travel is preferred for journeys under four hours.",
    "Contact the Travel Desk for group bookings of more than five people.",
    "Cancellations must be made at least 24 hours in advance to avoid fees.",
    "Weekend stays are allowed when they reduce the overall cost of the trip.",
    "Use the corporate card for all travel expenses where possible.",
    "Visa requirements are the traveller's responsibility.",
    "Safety advisories are published on the intranet and must be read before departure.",
    "Limits are reviewed every year by the finance team.",
];

const CONTACT_SENTENCES: &[&str] = &[
    "For urgent issues outside business hours, call the global hotline.",
    "Please include your employee ID in every request.",
    "Response times depend on the priority of the request.",
    "Requests can also be submitted through the Service Catalog.",
    "Each office has a local contact, listed in this article.",
    "Email aliases are monitored during business hours only.",
    "Escalations go to the team lead after two business days.",
    "Do not share passwords or one-time codes with anyone, including support staff.",
    "Opening hours are given in local time.",
    "Feedback about the service can be left in the satisfaction survey.",
];

const SOFTWARE_SENTENCES: &[&str] = &[
    "Only approved versions may be installed on company devices.",
    "Older versions are removed during the monthly patch cycle.",
    "Request a licence through the Service Catalog before installing.",
    "Beta releases are not approved for production use.",
    "Security reviews are repeated for every major release.",
    "Plugins and extensions need a separate approval.",
    "Installations are managed by the endpoint management tool.",
    "Report problems with approved software to the IT Service Desk.",
    "Versions marked as under review must not be rolled out yet.",
    "The list is updated after each review board meeting.",
];

const HOWTO_TITLES: &[&str] = &[
    "How to reset your password",
    "Setting up the VPN on a new laptop",
    "Requesting a new badge",
    "Printing from your laptop",
    "Booking a meeting room",
    "Connecting to the guest Wi-Fi",
    "Setting up multi-factor authentication",
    "Sharing files with external partners",
    "Reporting a phishing email",
    "Requesting access to a shared drive",
];

const TRANSFERS: &[&str] = &["Taxi", "Train", "Shuttle bus", "Ride-share", "Rental car"];
const CARS: &[&str] = &["Compact", "Economy", "Midsize", "Full-size", "SUV"];
const TEAMS: &[&str] = &[
    "IT Service Desk",
    "Payroll",
    "Facilities",
    "Security Operations",
    "Benefits",
    "Procurement",
    "Legal Help",
    "Travel Desk",
    "Network Operations",
    "Identity and Access",
    "Finance Helpdesk",
    "Workplace Services",
];
const SOFTWARE: &[&str] = &[
    "Zoom",
    "Slack",
    "Google Chrome",
    "Mozilla Firefox",
    "Visual Studio Code",
    "Python",
    "Node.js",
    "Docker Desktop",
    "Git",
    "7-Zip",
    "Adobe Acrobat Reader",
    "Microsoft Teams",
    "Postman",
    "Tableau Desktop",
    "RStudio",
    "Java Runtime",
    "VLC Media Player",
    "Notepad++",
    "PuTTY",
    "Wireshark",
];
const PLATFORMS: &[&str] = &["Windows 11", "macOS Sonoma", "Ubuntu 22.04", "Windows 10", "macOS Ventura", "Windows Server 2022", "Red Hat Enterprise Linux 9"];
const HOURS: &[&str] = &["08:00-17:00", "09:00-18:00", "07:00-16:00", "24/7", "10:00-19:00"];

/// `n` sentences of the bank, in random order (repeating only after the bank is used up).
fn paragraphs(rng: &mut Rng, bank: &[&str], n: usize) -> Vec<Block> {
    let mut order: Vec<&str> = bank.to_vec();
    order.shuffle(rng);
    order.iter().cycle().take(n).map(|s| Block::Para(s.to_string())).collect()
}

/// The other articles a search turns up: one about each of a random number (in `counts`) of
/// the subjects of `pool` other than `subject`, in a random order.
fn distractors(
    rng: &mut Rng,
    pool: &[&'static str],
    subject: &str,
    counts: std::ops::RangeInclusive<usize>,
    mut article: impl FnMut(&mut Rng, &'static str) -> Article,
) -> Vec<Article> {
    let mut others: Vec<&'static str> = pool.iter().copied().filter(|o| *o != subject).collect();
    others.shuffle(rng);
    let n = rng.random_range(counts);
    others.into_iter().take(n).map(|o| article(rng, o)).collect()
}

fn article(rng: &mut Rng, title: String, category: &str, body: Vec<Block>) -> Article {
    Article {
        number: String::new(),
        title,
        category: category.to_string(),
        author: vocab::random_person(rng),
        updated: vocab::day(rng),
        views: rng.random_range(12..5000),
        body,
    }
}

/// A body: intro, the key facts (a table, or sentences scattered through the text), more text.
fn body(rng: &mut Rng, bank: &[&str], heading: String, table: Block, sentences: Vec<String>) -> Vec<Block> {
    let mut b = vec![Block::Heading("Overview".to_string())];
    b.extend({
        let n = rng.random_range(3..=10);
        paragraphs(rng, bank, n)
    });
    if rng.random_bool(0.5) {
        b.push(Block::Heading(heading));
        b.push(table);
        b.push(Block::Heading("Details".to_string()));
        b.extend({
            let n = rng.random_range(4..=14);
            paragraphs(rng, bank, n)
        });
    } else {
        b.push(Block::Heading("Details".to_string()));
        let mut rest = {
            let n = rng.random_range(6..=16);
            paragraphs(rng, bank, n)
        };
        for s in sentences {
            let at = rng.random_range(0..=rest.len());
            rest.insert(at, Block::Para(s));
        }
        b.extend(rest);
    }
    b.push(Block::Heading("Questions".to_string()));
    b.extend({
        let n = rng.random_range(1..=4);
        paragraphs(rng, bank, n)
    });
    b
}

struct Travel {
    hotel: u32,
    meal: u32,
    transfer: usize,
    lead: u32,
    taxi: u32,
    car: usize,
}

impl Travel {
    fn random(rng: &mut Rng) -> Travel {
        Travel {
            hotel: 120 + 5 * rng.random_range(0..57),
            meal: 40 + 5 * rng.random_range(0..17),
            transfer: rng.random_range(0..TRANSFERS.len()),
            lead: rng.random_range(7..=30),
            taxi: 20 + 5 * rng.random_range(0..13),
            car: rng.random_range(0..CARS.len()),
        }
    }
}

fn travel_article(rng: &mut Rng, city: &str, t: &Travel) -> Article {
    let transfer = TRANSFERS[t.transfer];
    let car = CARS[t.car];
    let table = Block::Table {
        header: vec!["Item".into(), "Limit".into()],
        rows: vec![
            vec!["Maximum hotel rate per night".into(), format!("${}", t.hotel)],
            vec!["Daily meal allowance".into(), format!("${}", t.meal)],
            vec!["Approved airport transfer".into(), transfer.into()],
            vec!["Minimum booking lead time".into(), format!("{} days", t.lead)],
            vec!["Maximum taxi fare per ride".into(), format!("${}", t.taxi)],
            vec!["Rental car class".into(), car.into()],
        ],
    };
    let sentences = vec![
        format!("The maximum hotel rate in {city} is ${} per night.", t.hotel),
        format!("Employees travelling to {city} receive a daily meal allowance of ${}.", t.meal),
        format!("The approved airport transfer in {city} is: {transfer}."),
        format!("Trips to {city} must be booked at least {} days in advance.", t.lead),
        format!("A single taxi ride in {city} may cost up to ${}.", t.taxi),
        format!("Rental cars in {city} must be of the {car} class."),
    ];
    let b = body(rng, TRAVEL_SENTENCES, format!("Limits for {city}"), table, sentences);
    article(rng, format!("Business travel guidelines: {city}"), "Travel", b)
}

fn contact_article(rng: &mut Rng, team: &str, rows: &[(String, u32, &str)]) -> Article {
    let email = |city: &str| format!("{}-{}@example.com", vocab::slug(team), vocab::slug(city));
    let table = Block::Table {
        header: vec!["Office".into(), "Phone extension".into(), "Email".into(), "Hours".into()],
        rows: rows.iter().map(|(c, ext, h)| vec![c.clone(), format!("ext. {ext}"), email(c), h.to_string()]).collect(),
    };
    let sentences = rows.iter().map(|(c, ext, h)| format!("The {team} team in {c} can be reached on ext. {ext} ({h}) or at {}.", email(c))).collect();
    let b = body(rng, CONTACT_SENTENCES, "Office contacts".to_string(), table, sentences);
    article(rng, format!("Contacting the {team} team"), "Support", b)
}

fn version_article(rng: &mut Rng, software: &str, rows: &[(&str, String, &str)]) -> Article {
    let table = Block::Table {
        header: vec!["Platform".into(), "Approved version".into(), "Status".into()],
        rows: rows.iter().map(|(p, v, s)| vec![p.to_string(), v.clone(), s.to_string()]).collect(),
    };
    let sentences = rows.iter().map(|(p, v, s)| format!("On {p}, version {v} of {software} has the status: {s}.")).collect();
    let b = body(rng, SOFTWARE_SENTENCES, "Approved versions".to_string(), table, sentences);
    article(rng, format!("Approved software: {software}"), "Software", b)
}

fn random_version(rng: &mut Rng) -> String {
    format!("{}.{}.{}", rng.random_range(1..=30), rng.random_range(0..10), rng.random_range(0..10))
}

fn random_contact_rows(rng: &mut Rng, must: Option<(&str, u32)>) -> Vec<(String, u32, &'static str)> {
    let mut cities: Vec<&str> = LOCATIONS.to_vec();
    cities.shuffle(rng);
    let n = rng.random_range(4..=8);
    let mut rows: Vec<(String, u32, &'static str)> = Vec::new();
    if let Some((city, ext)) = must {
        rows.push((city.to_string(), ext, vocab::pick(rng, HOURS)));
    }
    for c in cities {
        if rows.len() >= n {
            break;
        }
        if rows.iter().any(|r| r.0 == c) {
            continue;
        }
        let mut ext = rng.random_range(1000..10000);
        while rows.iter().any(|r| r.1 == ext) {
            ext = rng.random_range(1000..10000);
        }
        rows.push((c.to_string(), ext, vocab::pick(rng, HOURS)));
    }
    rows.shuffle(rng);
    rows
}

fn random_version_rows(rng: &mut Rng, must: Option<(&'static str, String)>) -> Vec<(&'static str, String, &'static str)> {
    let mut platforms: Vec<&'static str> = PLATFORMS.to_vec();
    platforms.shuffle(rng);
    let n = rng.random_range(3..=5);
    let mut rows: Vec<(&'static str, String, &'static str)> = Vec::new();
    if let Some((p, v)) = must {
        rows.push((p, v, "Approved"));
    }
    for p in platforms {
        if rows.len() >= n {
            break;
        }
        if rows.iter().any(|r| r.0 == p) {
            continue;
        }
        let status = *["Approved", "Approved", "Approved with restrictions", "Under review"].choose(rng).unwrap_or(&"Approved");
        rows.push((p, random_version(rng), status));
    }
    rows.shuffle(rng);
    rows
}

fn howto_article(rng: &mut Rng, title: &str) -> Article {
    let mut b = vec![Block::Heading("Steps".to_string())];
    let n = rng.random_range(5..=12);
    for i in 0..n {
        b.push(Block::Para(format!("{}. {}", i + 1, vocab::pick(rng, CONTACT_SENTENCES))));
    }
    article(rng, title.to_string(), "How-to", b)
}

/// `n` articles of every kind about random subjects.
pub(crate) fn filler_articles(rng: &mut Rng, n: usize) -> Vec<Article> {
    let mut out: Vec<Article> = Vec::with_capacity(n);
    while out.len() < n {
        let a = match rng.random_range(0..4) {
            0 => {
                let t = Travel::random(rng);
                {
                    let x = vocab::pick(rng, LOCATIONS);
                    travel_article(rng, x, &t)
                }
            }
            1 => {
                let rows = random_contact_rows(rng, None);
                {
                    let x = vocab::pick(rng, TEAMS);
                    contact_article(rng, x, &rows)
                }
            }
            2 => {
                let rows = random_version_rows(rng, None);
                {
                    let x = vocab::pick(rng, SOFTWARE);
                    version_article(rng, x, &rows)
                }
            }
            _ => {
                let x = vocab::pick(rng, HOWTO_TITLES);
                howto_article(rng, x)
            }
        };
        if !out.iter().any(|o| o.title == a.title) {
            out.push(a);
        }
    }
    number_articles(&mut out);
    out
}

fn number_articles(articles: &mut [Article]) {
    for (i, a) in articles.iter_mut().enumerate() {
        a.number = format!("KB{:07}", 10001 + i);
    }
}

/// The sentence banks filler paragraphs are drawn from.
const BANKS: [&[&str]; 3] = [TRAVEL_SENTENCES, CONTACT_SENTENCES, SOFTWARE_SENTENCES];

/// Whether a paragraph is filler text: a sentence of a bank, or a how-to step made of one.
fn is_filler(text: &str) -> bool {
    let step = text.split_once(". ").filter(|(n, _)| n.parse::<u32>().is_ok()).map(|(_, rest)| rest);
    BANKS.iter().any(|bank| bank.contains(&text) || step.is_some_and(|s| bank.contains(&s)))
}

/// Articles cut to `size`: at most `size.article_paragraphs()` filler paragraphs per section;
/// headings, tables and the sentences that carry facts stay. Full articles are left alone.
pub(crate) fn fit_articles(articles: &mut [Article], size: PageSize) {
    if size.is_full() {
        return;
    }
    let keep = size.article_paragraphs();
    for a in articles {
        let mut n = 0;
        a.body.retain(|b| match b {
            Block::Heading(_) => {
                n = 0;
                true
            }
            Block::Para(t) if is_filler(t) => {
                n += 1;
                n <= keep
            }
            _ => true,
        });
    }
}

/// Small filler articles (see [`fit_articles`]).
pub(crate) fn small_articles(mut articles: Vec<Article>) -> Vec<Article> {
    fit_articles(&mut articles, PageSize::Small);
    articles
}

/// Builds the instance: the target article, similar distractors, fillers; all shuffled. A
/// smaller size keeps fewer distractors and fillers (drawn all the same) and shorter articles.
fn kb_instance(rng: &mut Rng, size: PageSize, goal: String, target: Article, mut distractors: Vec<Article>, query: String, reply: Reply) -> Instance {
    let mut world = base_world(rng, size);
    let title = target.title.clone();
    let mut articles = vec![target];
    let n_fill = rng.random_range(6..=10);
    distractors.truncate(size.kb_distractors());
    let mut fillers = filler_articles(rng, n_fill);
    fillers.truncate(size.kb_fillers());
    for a in distractors.into_iter().chain(fillers) {
        if !articles.iter().any(|o| o.title == a.title) {
            articles.push(a);
        }
    }
    articles.shuffle(rng);
    number_articles(&mut articles);
    fit_articles(&mut articles, size);
    let article = articles.iter().position(|a| a.title == title).unwrap_or(0) as u16;
    world.set_articles(articles);
    Instance {
        goal: format!("Answer the following question using the knowledge base: \"{goal}\""),
        world,
        start: Route::KbHome,
        target: Target::Kb(KbTarget { reply, article, title, query }),
    }
}

fn numeric_decoys(v: u32, step: u32, fmt: impl Fn(u32) -> String) -> Vec<String> {
    [v + step, v.saturating_sub(step).max(1), v + 2 * step].into_iter().filter(|d| *d != v).map(fmt).collect()
}

/// Three phrasings of each travel question (`{c}` is the city).
const TRAVEL_QUESTIONS: [[&str; 3]; 6] = [
    [
        "What is the maximum hotel rate per night for business travel to {c}?",
        "How much can I spend per night on a hotel when travelling to {c} for business?",
        "What is the nightly hotel limit for business trips to {c}?",
    ],
    [
        "What is the daily meal allowance for business trips to {c}?",
        "How much is the meal allowance per day in {c}?",
        "What daily amount is allowed for meals when travelling to {c}?",
    ],
    [
        "Which airport transfer option is approved for business trips to {c}?",
        "How should I get from the airport in {c} according to the travel guidelines?",
        "What is the approved way to travel from the airport on trips to {c}?",
    ],
    [
        "How many days in advance must business trips to {c} be booked?",
        "What is the minimum booking lead time, in days, for trips to {c}?",
        "How early (in days) do I have to book a business trip to {c}?",
    ],
    [
        "What is the maximum taxi fare per ride for business trips to {c}?",
        "How much may a single taxi ride cost on a business trip to {c}?",
        "What is the taxi fare limit per ride in {c}?",
    ],
    [
        "Which rental car class is allowed for business trips to {c}?",
        "What car class may I rent when travelling to {c} for work?",
        "According to the travel guidelines, which rental car class applies to {c}?",
    ],
];

pub(crate) fn travel_policy(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let n = (LOCATIONS.len() * 3) as u64;
    let radix = [57u64, 17, TRANSFERS.len() as u64, 24, 13, CARS.len() as u64];
    let sizes: Vec<u64> = radix.iter().map(|r| r * n).collect();
    let mut pick = Pick::new(name, seed, sizes.iter().sum());
    let attr = pick.branch(&sizes);
    let city = LOCATIONS[pick.digit(LOCATIONS.len())];
    let question = TRAVEL_QUESTIONS[attr][pick.digit(3)].replace("{c}", city);
    let value = pick.digit(radix[attr] as usize) as u32;
    let mut t = Travel::random(&mut rng);
    let money = |v: u32| format!("${v}");
    let labels = |list: &[&str], skip: &str| -> Vec<String> { list.iter().filter(|x| **x != skip).map(|x| x.to_string()).collect() };
    let (answer, message, decoys) = match attr {
        0 => {
            t.hotel = 120 + 5 * value;
            let m = format!("The maximum hotel rate per night in {city} is ${}.", t.hotel);
            (money(t.hotel), m, numeric_decoys(t.hotel, 5, money))
        }
        1 => {
            t.meal = 40 + 5 * value;
            let m = format!("The daily meal allowance for {city} is ${}.", t.meal);
            (money(t.meal), m, numeric_decoys(t.meal, 5, money))
        }
        2 => {
            t.transfer = value as usize;
            let tr = TRANSFERS[t.transfer];
            let m = format!("The approved airport transfer for {city} is: {tr}.");
            (tr.to_string(), m, labels(TRANSFERS, tr))
        }
        3 => {
            t.lead = 7 + value;
            let m = format!("Trips to {city} must be booked at least {} days in advance.", t.lead);
            (t.lead.to_string(), m, numeric_decoys(t.lead, 1, |v| v.to_string()))
        }
        4 => {
            t.taxi = 20 + 5 * value;
            let m = format!("A taxi ride in {city} may cost up to ${}.", t.taxi);
            (money(t.taxi), m, numeric_decoys(t.taxi, 5, money))
        }
        _ => {
            t.car = value as usize;
            let car = CARS[t.car];
            let m = format!("The allowed rental car class for {city} is: {car}.");
            (car.to_string(), m, labels(CARS, car))
        }
    };
    let target = travel_article(&mut rng, city, &t);
    let distractors = distractors(&mut rng, LOCATIONS, city, 4..=7, |rng, c| {
        let t = Travel::random(rng);
        travel_article(rng, c, &t)
    });
    let query = format!("travel guidelines {city}");
    kb_instance(&mut rng, size, question, target, distractors, query, Reply { answer, message, decoys })
}

pub(crate) fn support_contact(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let mut pick = Pick::new(name, seed, (TEAMS.len() * LOCATIONS.len() * 3 * 9000) as u64);
    let team = TEAMS[pick.digit(TEAMS.len())];
    let city = LOCATIONS[pick.digit(LOCATIONS.len())];
    let question = match pick.digit(3) {
        0 => format!("What is the phone extension of the {team} team in the {city} office?"),
        1 => format!("Which extension should I call to reach {team} in {city}?"),
        _ => format!("How can I phone the {team} team at the {city} office? Give the extension."),
    };
    let ext = 1000 + pick.digit(9000) as u32;
    let rows = random_contact_rows(&mut rng, Some((city, ext)));
    let decoys: Vec<String> = rows.iter().filter(|r| r.1 != ext).map(|r| r.1.to_string()).collect();
    let target = contact_article(&mut rng, team, &rows);
    let distractors = distractors(&mut rng, TEAMS, team, 3..=6, |rng, t| {
        let rows = random_contact_rows(rng, None);
        contact_article(rng, t, &rows)
    });
    kb_instance(
        &mut rng,
        size,
        question,
        target,
        distractors,
        format!("contacting {team}"),
        Reply { answer: ext.to_string(), message: format!("The {team} team in {city} can be reached on ext. {ext}."), decoys },
    )
}

pub(crate) fn approved_version(name: &'static str, seed: u64, size: PageSize) -> Instance {
    let mut rng = pick::rng(name, seed);
    let mut pick = Pick::new(name, seed, (SOFTWARE.len() * PLATFORMS.len() * 3 * 3000) as u64);
    let software = SOFTWARE[pick.digit(SOFTWARE.len())];
    let platform = PLATFORMS[pick.digit(PLATFORMS.len())];
    let question = match pick.digit(3) {
        0 => format!("Which version of {software} is approved for {platform}?"),
        1 => format!("What is the approved {software} version on {platform}?"),
        _ => format!("Which {software} release may be installed on {platform}?"),
    };
    let version = format!("{}.{}.{}", 1 + pick.digit(30), pick.digit(10), pick.digit(10));
    let rows = random_version_rows(&mut rng, Some((platform, version.clone())));
    let mut decoys: Vec<String> = rows.iter().filter(|r| r.1 != version).map(|r| r.1.clone()).collect();
    decoys.push(random_version(&mut rng));
    decoys.retain(|d| *d != version);
    let target = version_article(&mut rng, software, &rows);
    let distractors = distractors(&mut rng, SOFTWARE, software, 3..=6, |rng, s| {
        let rows = random_version_rows(rng, None);
        version_article(rng, s, &rows)
    });
    kb_instance(
        &mut rng,
        size,
        question,
        target,
        distractors,
        format!("approved software {software}"),
        Reply { message: format!("The approved version of {software} for {platform} is {version}."), answer: version, decoys },
    )
}
