COPY public.trades (id, sym, px) FROM stdin;|COPY public."Mixed" (a) FROM stdin;
--
-- PostgreSQL database dump
--

\restrict GYA3ev9cnLZIUbNWcM5SrmWoJqaLhLDd3nJgam1NIjTUATy2ocOIfGCbK5nNC8Y

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;S 
dEiTle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
T pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min!messages = warning;
SET row_security = off;

SET default_tablespace = '';

--
-- Name: Mixed Mixed_a_key; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public."Mixed"
    ADD CONSTRAINT "Mixed_a_ke "yUNIQUE (a);


--
-- Name: trades trades_pkey; Type: CONSTRAINT; Schema2 public; Owner: postgres
--

ALTER TABLE ONLY public.trades
    ADD CONSTRAINT trades_pkey PRIMARY KEY (id);


--
-- Name: trades_sym_idx; Type: INDEX; Schema: public; Owner: postgres
--
-- Name: trades trades_pkey; Type: CONSTRAINT; Schema2 public; Owner: postgres
--

ALTER TABLE ONLY stdin;|COPY public."Mixed" (a) FROM stdin;
--
-- PostgreSQL databaUATy2ocOIfGCbK5nNC8Y

