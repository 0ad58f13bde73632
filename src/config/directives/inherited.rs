//! What each level of the configuration sets for requests
//! ([`Inherited`]): every handler of a per-request directive writes here,
//! levels inherit outward-in (http -> server -> location) as nginx merges
//! them, and the innermost level resolves into the location's `Settings`.
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use crate::config::settings::SizeValue;
use std::time::Duration;

use super::{gzip, proxy_rewrites, static_files};
use crate::config::parse::Directive;
use crate::config::{AccessLogTarget, AccessRule, AddHeader, Config, Settings};
use crate::variables::Template;

/// Per-request settings that inherit http -> server -> location, as in
/// nginx: a value set at an inner level wins.
#[derive(Clone, Default)]
pub(super) struct Inherited {
    pub(super) client_max_body_size: Option<u64>,
    pub(super) client_header_timeout: Option<Duration>,
    pub(super) client_body_timeout: Option<Duration>,
    pub(super) send_timeout: Option<Duration>,
    pub(super) keepalive_timeout: Option<Duration>,
    pub(super) keepalive_requests: Option<u32>,
    pub(super) max_head: Option<usize>,
    pub(super) max_response_head: Option<usize>,
    /// nginx's buffering sizes: no effect on ferry, but nginx refuses some
    /// combinations, and so must ferry (`proxy::check_buffering`).
    pub(super) proxy_buffers: Option<(u64, u64)>,
    pub(super) proxy_busy_buffers_size: Option<u64>,
    pub(super) proxy_temp_file_write_size: Option<u64>,
    pub(super) proxy_max_temp_file_size: Option<u64>,
    pub(super) lingering_time: Option<Duration>,
    pub(super) lingering_timeout: Option<Duration>,
    pub(super) proxy_connect_timeout: Option<Duration>,
    pub(super) proxy_read_timeout: Option<Duration>,
    pub(super) proxy_send_timeout: Option<Duration>,
    pub(super) access_log: Option<AccessLogTarget>,
    pub(super) access_log_if: Option<Option<Template>>,
    pub(super) next_upstream: Option<u16>,
    pub(super) next_upstream_tries: Option<u32>,
    pub(super) next_upstream_timeout: Option<Duration>,
    pub(super) log_format: Option<usize>,
    pub(super) proxy_set_headers: Option<Vec<(String, Template)>>,
    pub(super) hide_headers: Option<Vec<String>>,
    pub(super) pass_headers: Option<Vec<String>>,
    pub(super) pass_request_headers: Option<bool>,
    pub(super) pass_request_body: Option<bool>,
    pub(super) real_ip_from: Option<Vec<crate::http::realip::TrustedSource>>,
    pub(super) real_ip_header: Option<crate::http::realip::RealIpHeader>,
    pub(super) real_ip_recursive: Option<bool>,
    /// `auth_basic`: `Some(None)` for `off`.
    pub(super) auth_realm: Option<Option<Template>>,
    pub(super) auth_user_file: Option<std::path::PathBuf>,
    pub(super) satisfy_any: Option<bool>,
    pub(super) gzip: gzip::GzipLines,
    pub(super) limit_reqs: Option<Vec<crate::limits::LimitReq>>,
    pub(super) limit_req_status: Option<u16>,
    pub(super) limit_req_log_level: Option<::log::Level>,
    pub(super) limit_req_dry_run: Option<bool>,
    pub(super) limit_conns: Option<Vec<crate::limits::LimitConn>>,
    pub(super) limit_conn_status: Option<u16>,
    pub(super) limit_conn_log_level: Option<::log::Level>,
    pub(super) limit_conn_dry_run: Option<bool>,
    pub(super) limit_rate: Option<crate::config::settings::SizeValue>,
    pub(super) limit_rate_after: Option<crate::config::settings::SizeValue>,
    pub(super) set_body: Option<Template>,
    pub(super) add_headers: Option<Vec<AddHeader>>,
    pub(super) access_rules: Option<Vec<AccessRule>>,
    pub(super) ignore_invalid_headers: Option<bool>,
    pub(super) cookie_domains: Option<Vec<(String, String)>>,
    pub(super) cookie_paths: Option<Vec<(String, String)>>,
    /// `proxy_redirect` lines at the innermost level that has any.
    pub(super) proxy_redirect: Option<proxy_rewrites::Redirects>,
    pub(super) underscores_in_headers: Option<bool>,
    /// The `proxy_ssl_*` lines in force, at most one per name: read only
    /// where a location proxies to `https://` (`crate::tls::upstream`).
    pub(super) proxy_ssl: Vec<Directive>,
    pub(super) files: static_files::FilesInherited,
    pub(super) error_pages: Option<Vec<crate::config::ErrorPage>>,
    pub(super) intercept_errors: Option<bool>,
    pub(super) charset: Option<Option<String>>,
    pub(super) charset_types: Option<Vec<String>>,
    pub(super) rewrite_log: Option<bool>,
    pub(super) keepalive_disable: Option<u8>,
}

impl Inherited {
    /// `self` (inner level) over `outer`.
    pub(super) fn over(self, outer: &Inherited) -> Inherited {
        Inherited {
            client_max_body_size: self.client_max_body_size.or(outer.client_max_body_size),
            client_header_timeout: self.client_header_timeout.or(outer.client_header_timeout),
            client_body_timeout: self.client_body_timeout.or(outer.client_body_timeout),
            send_timeout: self.send_timeout.or(outer.send_timeout),
            keepalive_timeout: self.keepalive_timeout.or(outer.keepalive_timeout),
            keepalive_requests: self.keepalive_requests.or(outer.keepalive_requests),
            max_head: self.max_head.or(outer.max_head),
            max_response_head: self.max_response_head.or(outer.max_response_head),
            proxy_buffers: self.proxy_buffers.or(outer.proxy_buffers),
            proxy_busy_buffers_size: self
                .proxy_busy_buffers_size
                .or(outer.proxy_busy_buffers_size),
            proxy_temp_file_write_size: self
                .proxy_temp_file_write_size
                .or(outer.proxy_temp_file_write_size),
            proxy_max_temp_file_size: self
                .proxy_max_temp_file_size
                .or(outer.proxy_max_temp_file_size),
            lingering_time: self.lingering_time.or(outer.lingering_time),
            lingering_timeout: self.lingering_timeout.or(outer.lingering_timeout),
            proxy_connect_timeout: self.proxy_connect_timeout.or(outer.proxy_connect_timeout),
            proxy_read_timeout: self.proxy_read_timeout.or(outer.proxy_read_timeout),
            proxy_send_timeout: self.proxy_send_timeout.or(outer.proxy_send_timeout),
            access_log: self.access_log.clone().or_else(|| outer.access_log.clone()),
            access_log_if: self
                .access_log_if
                .clone()
                .or_else(|| outer.access_log_if.clone()),
            next_upstream: self.next_upstream.or(outer.next_upstream),
            next_upstream_tries: self.next_upstream_tries.or(outer.next_upstream_tries),
            next_upstream_timeout: self.next_upstream_timeout.or(outer.next_upstream_timeout),
            log_format: self.log_format.or(outer.log_format),
            proxy_set_headers: self
                .proxy_set_headers
                .or_else(|| outer.proxy_set_headers.clone()),
            hide_headers: self.hide_headers.or_else(|| outer.hide_headers.clone()),
            pass_headers: self.pass_headers.or_else(|| outer.pass_headers.clone()),
            pass_request_headers: self.pass_request_headers.or(outer.pass_request_headers),
            pass_request_body: self.pass_request_body.or(outer.pass_request_body),
            real_ip_from: self.real_ip_from.or_else(|| outer.real_ip_from.clone()),
            real_ip_header: self.real_ip_header.or_else(|| outer.real_ip_header.clone()),
            real_ip_recursive: self.real_ip_recursive.or(outer.real_ip_recursive),
            auth_realm: self.auth_realm.or_else(|| outer.auth_realm.clone()),
            auth_user_file: self.auth_user_file.or_else(|| outer.auth_user_file.clone()),
            satisfy_any: self.satisfy_any.or(outer.satisfy_any),
            gzip: self.gzip.inherit(&outer.gzip),
            limit_reqs: self.limit_reqs.or_else(|| outer.limit_reqs.clone()),
            limit_req_status: self.limit_req_status.or(outer.limit_req_status),
            limit_req_log_level: self.limit_req_log_level.or(outer.limit_req_log_level),
            limit_req_dry_run: self.limit_req_dry_run.or(outer.limit_req_dry_run),
            limit_conns: self.limit_conns.or_else(|| outer.limit_conns.clone()),
            limit_conn_status: self.limit_conn_status.or(outer.limit_conn_status),
            limit_conn_log_level: self.limit_conn_log_level.or(outer.limit_conn_log_level),
            limit_conn_dry_run: self.limit_conn_dry_run.or(outer.limit_conn_dry_run),
            limit_rate: self.limit_rate.clone().or_else(|| outer.limit_rate.clone()),
            limit_rate_after: self
                .limit_rate_after
                .clone()
                .or_else(|| outer.limit_rate_after.clone()),
            set_body: self.set_body.or_else(|| outer.set_body.clone()),
            add_headers: self.add_headers.or_else(|| outer.add_headers.clone()),
            access_rules: self.access_rules.or_else(|| outer.access_rules.clone()),
            ignore_invalid_headers: self.ignore_invalid_headers.or(outer.ignore_invalid_headers),
            cookie_domains: self.cookie_domains.or_else(|| outer.cookie_domains.clone()),
            cookie_paths: self.cookie_paths.or_else(|| outer.cookie_paths.clone()),
            proxy_redirect: self.proxy_redirect.or_else(|| outer.proxy_redirect.clone()),
            underscores_in_headers: self.underscores_in_headers.or(outer.underscores_in_headers),
            files: self.files.over(&outer.files),
            error_pages: self.error_pages.or_else(|| outer.error_pages.clone()),
            intercept_errors: self.intercept_errors.or(outer.intercept_errors),
            charset: self.charset.or_else(|| outer.charset.clone()),
            charset_types: self.charset_types.or_else(|| outer.charset_types.clone()),
            rewrite_log: self.rewrite_log.or(outer.rewrite_log),
            keepalive_disable: self.keepalive_disable.or(outer.keepalive_disable),
            proxy_ssl: {
                let mut lines = self.proxy_ssl;
                let inherited: Vec<Directive> = outer
                    .proxy_ssl
                    .iter()
                    .filter(|line| !lines.iter().any(|own| own.name == line.name))
                    .cloned()
                    .collect();
                lines.extend(inherited);
                lines
            },
        }
    }

    /// The settings in force: what is set here or above, else nginx's
    /// default.
    pub(super) fn resolve(&self, config: &Config) -> Settings {
        let mut settings = Settings {
            files: self.files.resolve(&config.prefix),
            ..Settings::default()
        };
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = self.$field.clone() { settings.$field = value; })*
            };
        }
        set!(
            client_max_body_size,
            client_header_timeout,
            client_body_timeout,
            send_timeout,
            keepalive_timeout,
            keepalive_requests,
            max_head,
            lingering_time,
            lingering_timeout,
            proxy_connect_timeout,
            proxy_read_timeout,
            proxy_send_timeout,
            access_log,
            next_upstream,
            next_upstream_tries,
            next_upstream_timeout,
            log_format,
            proxy_set_headers,
            hide_headers,
            add_headers,
            access_rules,
        );
        if let Some(ignore) = self.ignore_invalid_headers {
            settings.field_names.ignore_invalid = ignore;
        }
        if let Some(underscores) = self.underscores_in_headers {
            settings.field_names.underscores = underscores;
        }
        if self.max_response_head.is_some() {
            settings.max_response_head = self.max_response_head;
        }
        if let Some(rules) = &self.cookie_domains {
            settings.cookie_domains = rules.clone();
        }
        if let Some(rules) = &self.cookie_paths {
            settings.cookie_paths = rules.clone();
        }
        if let Some(names) = &self.pass_headers {
            settings.pass_headers = names.clone();
        }
        if let Some(pass) = self.pass_request_headers {
            settings.pass_request_headers = pass;
        }
        if let Some(from) = &self.real_ip_from {
            settings.real_ip.from = from.clone();
        }
        if let Some(header) = &self.real_ip_header {
            settings.real_ip.header = header.clone();
        }
        if let Some(recursive) = self.real_ip_recursive {
            settings.real_ip.recursive = recursive;
        }
        if let Some(realm) = &self.auth_realm {
            settings.auth_realm = realm.clone();
        }
        if let Some(file) = &self.auth_user_file {
            settings.auth_user_file = Some(file.clone());
        }
        if let Some(any) = self.satisfy_any {
            settings.satisfy_any = any;
        }
        self.gzip.apply(&mut settings.gzip);
        let limits = &mut settings.limits;
        limits.requests = self.limit_reqs.clone().unwrap_or_default();
        limits.request_status = self.limit_req_status.unwrap_or(503);
        limits.request_log_level = self.limit_req_log_level.unwrap_or(::log::Level::Error);
        limits.request_dry_run = self.limit_req_dry_run.unwrap_or(false);
        limits.connections = self.limit_conns.clone().unwrap_or_default();
        limits.connection_status = self.limit_conn_status.unwrap_or(503);
        limits.connection_log_level = self.limit_conn_log_level.unwrap_or(::log::Level::Error);
        limits.connection_dry_run = self.limit_conn_dry_run.unwrap_or(false);
        let split = |value: &Option<SizeValue>| match value {
            None => (0, None),
            Some(SizeValue::Fixed(size)) => (*size, None),
            Some(SizeValue::Rendered(template)) => (0, Some(template.clone())),
        };
        (limits.rate, limits.rate_rendered) = split(&self.limit_rate);
        (limits.rate_after, limits.rate_after_rendered) = split(&self.limit_rate_after);
        // As nginx: a `proxy_set_body` wins over `proxy_pass_request_body`.
        settings.upstream_body = match (&self.set_body, self.pass_request_body) {
            (Some(body), _) => crate::config::UpstreamBody::Set(body.clone()),
            (None, Some(false)) => crate::config::UpstreamBody::None,
            (None, _) => crate::config::UpstreamBody::Client,
        };
        if let Some(condition) = &self.access_log_if {
            settings.access_log_if = condition.clone();
        }
        if let Some(pages) = &self.error_pages {
            settings.error_pages = pages.clone();
        }
        if let Some(intercept) = self.intercept_errors {
            settings.intercept_errors = intercept;
        }
        if let Some(charset) = &self.charset {
            settings.charset = charset.clone();
        }
        if let Some(types) = &self.charset_types {
            settings.charset_types = types.clone();
        }
        if let Some(log) = self.rewrite_log {
            settings.rewrite_log = log;
        }
        if let Some(browsers) = self.keepalive_disable {
            settings.keepalive_disable = browsers;
        }
        settings
    }
}
